"""The emitter's kernels, read as text: what is formed before the loop and what stays in it, what
joins the bias or rides on the weights, what is written in place, and what the docstring says of
the cell. The cells are test_random_cells' fixed ones and the packaged kernels; that their
gradients are right, test_random_cells and test_kernels show."""

import importlib
import re
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from lstm_derive.gradcheck import check_kernel
from test_random_cells import FIXED_CELLS, kernel_of, kernel_source


def test_values_that_read_no_state_are_formed_for_all_steps_before_the_loop():
    """An SRU's gates, a QRNN's, a MinimalRNN's z: one call over every step, outside the loop."""
    for name, before in [("an sru whose gates read x alone", ["np.exp(pre_W_a_f_a_r_seq, out=pre_W_a_f_a_r_seq)"]),
                         ("a qrnn-like cell whose affine's every block is a gate of x alone", ["np.exp(pre_W_seq, out=pre_W_seq)"]),
                         ("gates of x alone, each over a sum of two affines' blocks",
                          ["bias_W[:H] -= 1  #", "pre_W_a_f_a_r_seq -= pre_U_u_f_u_r_seq  #",
                           "np.exp(pre_W_a_f_a_r_seq, out=pre_W_a_f_a_r_seq)"]),
                         ("a minimalrnn: a value of x alone that a recurrent affine reads, and one read by no step",
                          ["_sigmoid_into(pre_W_seq, sigmoid_z_seq, minus_one)", "s_seq = pre_W_seq*sigmoid_z_seq", "np.tanh(s_seq, out=z_seq)",
                           "np.dot(z_seq.reshape(T * B, H), U_z_scaled.T, out=pre_U_seq.reshape(T * B, H))  # (5)\n"
                           "        pre_U_seq -= b_u  # (5)"]),
                         ("an affine of x, of two values formed before the loop, and of the state, each input with its bias",
                          ["pre_U_seq += np.dot(z_seq.reshape(T * B, H), U_z_scaled.T).reshape(T, B, 2 * H)  # (4)",
                           "pre_U_seq += np.dot(g_seq.reshape(T * B, H), U_g_scaled.T).reshape(T, B, 2 * H)  # (4)"]),
                         ("a value formed before the loop read by an affine whose gate is formed there too",
                          ["np.dot(z_seq.reshape(T * B, H), V_z_scaled.T, out=pre_V_seq.reshape(T * B, H))  # (3)",
                           "np.exp(pre_V_seq, out=pre_V_seq)"])]:
        source = kernel_source(textwrap.dedent(FIXED_CELLS[name]))
        forward = source[source.index("def forward("):source.index("def backward(")]
        head, loop = forward.split("for t in range(T):")
        loop = loop.split("\n    ys = ")[0]
        assert all(line in head for line in before), name
        assert "# formed before the loop" in loop and "_sigmoid_into(" not in loop and "np.tanh(s" not in loop, name
        assert "_seq.reshape(T * B, H)" not in loop and "U_z_scaled" not in loop and "pre_V" not in loop, name


def test_what_is_formed_before_the_loop_and_what_stays_in_it():
    """A value the loop reads but keeps no storage of stays in the loop, and so does one of it; a
    gate activated with one that reads the state stays with it; columns before the loop are the
    last axis's; a carry no equation reads is one array of zeros."""
    def parts(name):
        source = kernel_source(textwrap.dedent(FIXED_CELLS[name]))
        forward = source[source.index("def forward("):source.index("def backward(")]
        head, loop = forward.split("for t in range(T):")
        return head.split("with np.errstate")[-1], loop.split("\n    ys = ")[0], source

    head, loop, _ = parts("a value of x alone the loop reads unstored, and one that reads it")
    assert "s = a1*a2  # (2)" in loop and "np.tanh(s" in loop and "np.tanh(" not in head
    head, loop, _ = parts("a gate of x alone activated with one that reads the state, and a value of it")
    assert "f = " in loop and "np.tanh(two*f" in loop and "np.tanh(" not in head
    head, loop, _ = parts("gates of x alone, one with an extra of x alone, activated over some of the affine's columns")
    assert "pre_W_a_f_a_o_seq = pre_W_seq[..., H:3 * H]" in head and "[:, " not in head
    _, loop, source = parts("an sru whose gates read x alone")
    assert "dh_prev_zero = np.zeros((B, H), x.dtype)" in source and "dh_prev = dh_prev_zero" in source


def test_the_docstring_says_no_equation_reads_an_output_only_states_initial_value():
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an sru whose gates read x alone"]))
    assert "No equation reads the initial h: it is the final h of a sequence of length 0 alone." in source
    assert "No equation reads" not in kernel_source(textwrap.dedent(FIXED_CELLS["a leaky unit with a learned leak"]))


def test_the_docstring_says_when_none_s_zeros_are_a_pole():
    """h = tanh(a)/n_prev divides by zero at the first step from zeros; n = n_prev + i would not."""
    script = textwrap.dedent("""
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("pole", title="h divided by the previous normaliser")
        x = cell.input("x")
        h_prev, n_prev = cell.state("h"), cell.state("n", positive=True)
        a, i = cell.affine("W", [x, h_prev], blocks=["a", "i"])
        cell.update(h=tanh(a) / n_prev, n=n_prev + sigmoid(i))
    """)
    said = "An equation divides by n at zero: None's zeros make the first step divide by zero; give n a nonzero initial value."
    assert said in kernel_source(script)
    assert "divides by" not in kernel_source(script.replace("tanh(a) / n_prev", "tanh(a) / (n_prev + 1)"))


def test_the_docstring_says_when_init_params_draws_a_parameter_near_a_pole():
    """(tanh(a) - h_prev)/tau is a pole where tau is zero, around which init_params draws it; said of
    params as None's zeros are of the state, and not of 1 + tau**2, which never reaches zero."""
    script = textwrap.dedent("""
        from lstm_derive import Cell, tanh

        cell = Cell("leak", title="a leak by a learned time constant")
        x = cell.input("x")
        h_prev = cell.state("h")
        tau = cell.param("tau")
        (a,) = cell.affine("W", [x, h_prev])
        cell.update(h=h_prev + (tanh(a) - h_prev) / tau)
    """)
    source = kernel_source(script)
    params_doc = source[source.index("    params: a dict"):source.index("    x: (T, B, D)")]
    assert params_doc.endswith("        An equation divides by tau at zero: init_params draws it uniform around zero, "
                               "and near the pole the outputs and gradients grow without bound; give tau values away "
                               "from zero.\n")
    assert "divides by" not in kernel_source(script.replace("/ tau", "/ (1 + tau**2)"))


def test_lets_of_parameters_alone_are_formed_once_and_their_adjoints_summed():
    """The leak is one (H,) vector before the loops, not a sequence; dp reads dlam's sum once."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a leaky unit with a learned leak"]))
    assert "lam_seq" not in source and source.count("lam = sigmoid(p)  # (2) of parameters alone") == 2
    assert "dlam += " in source and "dp = lam*(1 - lam)*dlam" in source
    source = kernel_source(textwrap.dedent(FIXED_CELLS["lets of parameters alone, chained, their parameter also read per step"]))
    assert "mu_seq" not in source and "dp += h_prev*dc" in source
    assert "dp = _summed(dp, 0) + " in source


def test_steady_parts_of_gates_join_the_bias_once():
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an lstm with steady parts in its gates' pre-activations"]))
    assert "bias_W[H:2 * H] -= 1  #" in source and "bias_W[:H] -= lam  #" in source
    assert "bias_W[2 * H:3 * H] += q" in source  # -0.5*q, times -2 like the weights
    assert "o -= c*p_o  #" in source and "bias_W[3 * H:4 * H] -= q" in source
    assert not [gate for gate in "ifg" if f"the part beyond a_{gate}, " in source]  # no line in the loop


def test_the_backward_loop_reads_a_one_block_affines_adjoints_by_the_blocks_name():
    """rnn's loop scales da_seq[t]; its GEMM and the zeroing past a sequence's end read the same
    array by that name too, not by the buffer's, dpre_W_seq."""
    for name, block, affine in (("rnn", "da", "W"), ("gru_cho", "da_n", "W_n")):
        source = (Path(__file__).parent.parent / "lstm_derive" / "kernels" / f"{name}.py").read_text()
        loop = source[source.index("for t in reversed("):source.index("# The weights' gradients")]
        assert f"{block}_seq[t] *= dh" in loop and f"np.dot({block}_seq[t], " in loop, name
        assert f"np.copyto({block}_seq[t], 0, where=ended[t])" in loop and f"dpre_{affine}_seq" not in loop, name


def test_steady_parts_of_a_grus_sums_join_the_bias_once():
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a gru with steady parts in its gates' sums"]))
    # negated, as the weights carry the sigmoids' -1
    assert "bias_W[:H] -= 1  #" in source and "bias_W[H:2 * H] += 2*lam  #" in source
    assert "r -= " not in source and "z -= h_prev*q  #" in source  # the peephole stays in the loop
    assert "np.exp(pre_W_a_xr_a_xz, out=pre_W_a_xr_a_xz)" in source


def test_the_forward_pass_evaluates_each_call_once():
    """relu(a) written again after r = relu(a) reads r; exp(-relu(-a)) reads the relu(-a) it holds."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a let's call written again, and a call inside another"]))
    loop = source[source.index("for t in range(T):"):source.index("ys = h_seq[1:]")]
    code = "\n".join(line.split("#")[0] for line in loop.splitlines())
    assert "relu(" not in code and "np.exp(-relu0, out=exp0)" in code
    assert code.index("out=relu0") < code.index("out=exp0") and "def relu(" not in source


def test_numbers_times_gates_blocks_ride_on_the_weights():
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an lstm with numbers times its gates' blocks"]))
    assert '_gate_scale(("sigmoid", "sigmoid", "tanh", "sigmoid"), H, x.dtype, (2, 1, 0.5, -1))' in source
    assert '_gate_scale(("sigmoid", "sigmoid"), H, x.dtype, (3, 1))' in source
    assert "np.exp(pre_W_a_i_a_f_a_g, out=pre_W_a_i_a_f_a_g)" in source and "np.exp(pre_R, out=pre_R)" in source
    assert "(2*a_i, 0.5*a_g, -a_o)" in source and "(3*a_r)" in source
    assert "V_x_scaled" not in source  # tanh gates alone are not activated through exp: their own path
    assert "# exact, as these are powers of two" in source and "# rounded once per weight (3 no power of two)" in source


def test_the_complex_range_in_a_kernels_docstring_is_exps_over_the_largest_gate_factor():
    """exp overflows beyond log(max float64) = 709.78: a sigmoid gate reaches it at |a| = 709, a tanh
    through 2 sigmoid(2a) - 1 at 354, sigmoid(3*a) at 236, sigmoid(1000*a) at 0.709 (rounded down)."""
    top = float(np.log(np.finfo(np.float64).max))
    bounds = {name: re.search(r"\|Re a\| < ([\d.]+);", " ".join(importlib.import_module(f"lstm_derive.kernels.{name}").forward.__doc__.split())).group(1)
              for name in ("lstm", "gru")}
    assert bounds == {"lstm": str(int(top / 2)), "gru": str(int(top))}
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an lstm with numbers times its gates' blocks"]))
    assert f"|Re a| < {int(top / 3)};" in source
    source = kernel_source(textwrap.dedent("""
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("steep", title="A steep gate")
        x, h_prev = cell.input("x"), cell.state("h")
        a_z, a_n = cell.affine("W", [x, h_prev], blocks=["a_z", "a_n"])
        z = cell.let("z", sigmoid(1000 * a_z))
        cell.update(h=z * h_prev + (1 - z) * tanh(a_n))
    """))
    assert f"|Re a| < {np.floor(top / 1000 * 1000) / 1000:g};" in source  # 0.709


def test_a_block_read_by_two_gates_reads_one_local_formed_for_the_span():
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a block read by two gates"]))
    assert "np.multiply(dh_da_f_span[t - t0], dh, out=da_f_seq[t])  # (10) dL/da_f" in source
    # a_f reaches h through f and through s: the factor is no local derivative of h's equation
    assert "# (8), (9), (10) dh/da_f through the nodes between, read by the loop" in source and "∂h/∂a_f" not in source
    assert "            df = " not in source and "            ds = " not in source  # not formed in the loop


def test_a_span_local_reads_the_products_formed_for_the_span():
    """dh/dc = o*(1 - tanh_c**2) + p_o*da_o: the peephole's part is da_o's product, not recomputed."""
    source = (Path(__file__).parent.parent / "lstm_derive" / "kernels" / "lstm_peephole.py").read_text()
    assert "dh_dc_span += p_o*da_o_seq[t0:t1]" in source
    assert "dc_dc_prev_span += p_i*da_i_seq[t0:t1] + p_f*da_f_seq[t0:t1]" in source
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a span local that is a product's whole"]))
    assert "dm_dh_prev_span = da00_seq[t0:t1].copy()" in source


def test_the_loops_numbers_are_arrays_of_the_inputs_dtype():
    """1 - i and 2*dc in the loops read 0-d arrays made once (a Python number is converted at
    every call); exponents stay numbers (x**2 is NumPy's square) and the comments say 1 - i."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["numbers in both loops"]))
    forward, backward = source.split("def backward(")
    assert "np.subtract(one, i, out=f)  # (3) f = 1 - i" in forward
    assert "one, two = np.array(1, x.dtype), np.array(2, x.dtype)" in forward
    assert "two*dc" in backward and "two = np.array(2, x.dtype)" in backward
    assert "**two" not in source and "c += i*(g + c_prev**2)" in forward


def test_a_square_alone_is_written_into_its_storage():
    source = kernel_source(textwrap.dedent("""
        from lstm_derive import Cell, tanh

        cell = Cell("squared", title="A gate scaled by the square of the old output")
        x = cell.input("x")
        h_prev = cell.state("h")
        (a,) = cell.affine("W", [x, h_prev], blocks=["a"])
        m = cell.let("m", h_prev**2)
        cell.update(h=tanh(a) * m)
    """))
    assert "np.square(h_prev, out=m)  # (2) m = h_prev**2" in source  # not m[...] = h_prev**2: no temporary


def test_a_difference_of_two_names_is_one_subtraction():
    """A hard sigmoid, relu(0.2*a + 0.5) - relu(0.2*a - 0.5): np.subtract, not a negation and an addition."""
    source = kernel_source(textwrap.dedent("""
        from lstm_derive import Cell, relu, tanh

        cell = Cell("hard", title="A hard-sigmoid gate")
        x = cell.input("x")
        h_prev = cell.state("h")
        a, a_n = cell.affine("W", [x, h_prev], blocks=["a", "a_n"])
        z = cell.let("z", relu(0.2*a + 0.5) - relu(0.2*a - 0.5))
        cell.update(h=z * h_prev + (1 - z) * tanh(a_n))
    """))
    assert "np.subtract(relu1, relu0, out=z)" in source and "np.multiply(-1" not in source
    # ∂z/∂a = 0.2*[relu1 > 0] - 0.2*[relu0 > 0] in two lines, the citation heading both (the table links them)
    first, second = next(lines for lines in zip(source.splitlines(), source.splitlines()[1:]) if "∂z/∂a" in lines[0])
    assert first.endswith("∂z/∂a:") and second.strip() == "da_seq[t0:t1] -= 0.2*positive(relu0_seq[t0:t1])"


def test_a_block_adjoint_of_one_product_is_written_into_its_storage():
    """JANET's da_f, one product of a span's local and dh: np.multiply into da_f_seq[t], no temporary."""
    source = kernel_source(textwrap.dedent("""
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("janet", title="JANET")
        x = cell.input("x")
        h_prev = cell.state("h")
        a_f, a_c = cell.affine("W", [x, h_prev], blocks=["a_f", "a_c"])
        f = cell.let("f", sigmoid(a_f))
        cell.update(h=f * h_prev + (1 - sigmoid(a_f - 1)) * tanh(a_c))
    """))
    assert "np.multiply(dh_da_f_span[t - t0], dh, out=da_f_seq[t])" in source and "da_f_seq[t] = " not in source


def test_a_span_local_two_equations_read_cites_both():
    """h = o*tanh(c + m): ∂h/∂c and ∂h/∂m are one array, which both equations' rows of the table link."""
    source = kernel_source(textwrap.dedent("""
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("two_memories", title="Two memories read through one tanh")
        x = cell.input("x")
        h_prev, c_prev, m_prev = cell.state("h"), cell.state("c"), cell.state("m")
        a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_f", "a_g", "a_o"])
        f, o = cell.let("f", sigmoid(a_f)), cell.let("o", sigmoid(a_o))
        c = cell.let("c", f * c_prev + (1 - f) * tanh(a_g))
        m = cell.let("m", 0.9 * m_prev + 0.1 * c_prev)
        cell.update(h=o * tanh(c + m), c=c, m=m)
    """))
    line = next(line for line in source.splitlines() if "_span = o_seq[t0:t1]*(1 - tanh0_seq[t0:t1]**2)" in line)
    assert re.search(r"# \(\d+\), \(\d+\) ∂h/∂m = ∂h/∂c, read by the loop", line), line


def test_an_inline_gate_is_named_and_activated_with_the_others():
    """tanh(a_g) written inside c is the node g of the derivation, so its affine's four gates are
    activated with one exp, as in the packaged lstm, not each apart (12-29% of the time)."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an lstm whose candidate is written inline"]))
    assert "# (2), (3), (5), (4) all gates with one exp" in source
    assert "i, f, g, o = i_seq[t], f_seq[t], g_seq[t], o_seq[t]" in source
    assert "tanh_a_g" not in source and "_sigmoid_into(a_i" not in source


def test_a_block_read_as_it_is_stays_in_its_slot():
    """SRU's a_c, read by c and by df's local (c_prev - a_c): a view of the input GEMM's buffer,
    not a copy made at every step, and its adjoint goes over it: the backward pass is in place."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an sru-like cell whose candidate is a raw block"]))
    assert "a_c_seq = pre_W_seq[..., 2 * H:3 * H]  # kept where it is, not copied" in source
    assert "a_c_seq[t] = a_c" not in source and "a_c_seq = np.empty" not in source
    assert "a_c = a_c_seq[t]" in source  # no column slice at every step
    assert "dpre_W_seq = pre_W_seq" in source


def test_a_row_scaled_by_several_factors_is_scaled_by_one_product():
    """lstm's da_i, da_f, da_g (times dc) and da_o (times dh): the factors copied side by side,
    then one product of the step's contiguous row, not one per run of strided blocks. A run's
    factor broadcasts over its blocks; a lone block's is copied as it is."""
    source = (Path(__file__).parent.parent / "lstm_derive" / "kernels" / "lstm.py").read_text()
    assert ("dpre_W_by_a_i_a_f_a_g, dpre_W_by_a_o = dpre_W_by.reshape(B, 4, H)[:, 0:3], dpre_W_by[:, 3 * H:4 * H]"
            in source)
    loop = source[source.index("for t in reversed(range(t0, t1)):"):source.index("dpre_W_flat = ")]
    assert "dpre_W_by_a_i_a_f_a_g[...] = dc[:, np.newaxis]" in loop and "dpre_W_by_a_o[...] = dh\n" in loop
    assert "dpre_W_seq[t] *= dpre_W_by  # (14), (15), (16), (17) dL/da_i, da_f, da_g, da_o" in loop
    assert "dpre_W_blocks" not in source and "da_o_seq[t] *=" not in source
    # lone blocks each times its own factor (lstm_cifg's da_i by di, da_g by dc, da_o by dh) too
    cifg = (Path(__file__).parent.parent / "lstm_derive" / "kernels" / "lstm_cifg.py").read_text()
    assert "dpre_W_by_a_i[...] = di" in cifg and "dpre_W_seq[t] *= dpre_W_by  # (14), (15), (16)" in cifg
    # one run of every block (gru's, all times dh) is scaled in place: nothing to gather
    gru = (Path(__file__).parent.parent / "lstm_derive" / "kernels" / "gru.py").read_text()
    assert "dpre_W_blocks[t] *= dh[:, np.newaxis]" in gru and "dpre_W_by" not in gru


def test_a_one_block_affine_read_as_it_is_is_its_whole_buffer():
    """mLSTM's x-side factor, W_mx x alone: kept as the input GEMM wrote it, named without a slice."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["a multiplicative lstm (mLSTM), its one-block affines without biases"]))
    assert "aWmx0_seq = pre_Wmx_seq  # kept where it is, not copied" in source


def test_one_affines_adjacent_gates_are_activated_together():
    """SRU's f and r, each a sigmoid of its block plus a part known before the step: the parts
    added in place, then one exp over both gates' columns, where the blocks were."""
    source = kernel_source(textwrap.dedent(FIXED_CELLS["an sru-like cell whose candidate is a raw block"]))
    # negated: the weights carry the sigmoids' -1, and the parts are subtracted
    assert "pre_W_a_f_a_r_seq = pre_W_seq[..., :2 * H]  # -(a_f, a_r), then f, r" in source
    loop = source[source.index("for t in range(T):"):source.index("ys = h_seq[1:]")]
    assert "f -= c_prev*v_f" in loop and "r -= c_prev*v_r" in loop
    assert loop.count("np.exp(") == 1 and "np.exp(pre_W_a_f_a_r, out=pre_W_a_f_a_r)" in loop and "_sigmoid_into(" not in loop
    # a sigmoid alone is a run of its own, negated on the weights; a tanh alone is activated as written
    peephole_one = textwrap.dedent(FIXED_CELLS["an sru-like cell whose candidate is a raw block"]).replace(
        "r = cell.let(\"r\", sigmoid(a_r + v_r * c_prev))", "r = cell.let(\"r\", tanh(a_r) * v_r)")
    source = kernel_source(peephole_one)
    assert "pre_W_a_f_seq = pre_W_seq[..., :H]  # -(a_f), then f" in source and "f -= c_prev*v_f" in source
    assert "_sigmoid_into(" not in source
    tanh_two = peephole_one.replace("sigmoid(a_f + v_f * c_prev)", "tanh(a_f + v_f * c_prev)")  # and tanh(a_r)
    assert "np.tanh(pre_W_a_f_a_r, out=pre_W_a_f_a_r)  # (2), (3) f = tanh(a_f + c_prev*v_f), tanh_r = tanh(a_r)" in kernel_source(tanh_two)
    tanh_one = tanh_two.replace("tanh(a_r) * v_r", "a_r * v_r")
    assert "pre_W_a_f" not in kernel_source(tanh_one)  # no run: f is activated as written


def test_products_wait_in_temporaries_only_where_no_order_avoids_it():
    """A product over a gate waits in a temporary while a later product reads the gate; the
    products are ordered so that as few wait as can, and a read through a shared product counts
    as none (gru's da_hn and da_xr read da_xn's product, not n)."""
    kernels = Path(__file__).parent.parent / "lstm_derive" / "kernels"
    cifg = (kernels / "lstm_cifg.py").read_text()  # da_g (reads i) before da_i (reads i alone)
    assert "_tmp = np.empty_like" not in cifg
    assert cifg.index("# da_g = ") < cifg.index("# da_i = ")
    gru = (kernels / "gru.py").read_text()  # z and n read each other's products, r and a_hn too
    assert gru.count("_tmp = np.empty_like") == 2 and "da_xn_tmp" not in gru


PROJECTED = """
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("projected", title="An LSTM whose output is a projection of o*tanh(c)")
    x = cell.input("x")
    r_prev, c_prev = cell.state("r"), cell.state("c")
    a_i, a_f, a_g, a_o = cell.affine("W", [x, r_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
    c = cell.let("c", sigmoid(a_f) * c_prev + sigmoid(a_i) * tanh(a_g))
    m = cell.let("m", sigmoid(a_o) * tanh(c))
    (a_r,) = cell.affine("P", [m], blocks=["a_r"], bias=None)
    cell.update(c=c, r=a_r)
"""


def _checked_source(script):
    """A script's kernel source, whose gradients are checked first, with sequences of their own
    lengths as well."""
    with tempfile.TemporaryDirectory() as directory:
        kernel, source = kernel_of(textwrap.dedent(script), directory)
        reports = check_kernel(kernel, T=3, B=2, D=2, H=3) + check_kernel(kernel, T=3, B=2, D=2, H=3, lengths=[3, 1])
    assert all(r.ok for r in reports), "\n".join(map(str, reports))
    return source


def _checked_loop(script):
    """The forward loop of a script's kernel, whose gradients are checked first."""
    source = _checked_source(script)
    return source[source.index("for t in range(T):"):source.index("\n    ys = ")]


def test_a_block_that_is_a_new_state_is_written_by_its_gemm_into_the_states_storage():
    """r = a_r: the product goes straight into r_seq[t + 1], with no buffer of its own copied there
    at every step; with an input part and a bias too, and with two products in the loop."""
    loop = _checked_loop(PROJECTED)
    assert "np.dot(m, P_m.T, out=r)  # (8), (9) r = a_r, written where the state is kept" in loop
    assert "[...] = a_r" not in loop and "pre_P" not in loop
    loop = _checked_loop(PROJECTED.replace('cell.affine("P", [m], blocks=["a_r"], bias=None)',
                                           'cell.affine("P", [x, m, r_prev], blocks=["a_r"], bias="b_p")'))
    assert "np.dot(m, P_m.T, out=r)" in loop and "r += np.dot(r_prev, P_r.T)" in loop and "r += pre_P_seq[t]" in loop
    assert "[...] = a_r" not in loop


def test_a_quotient_is_one_division_into_its_storage():
    """h = c/n is np.divide(c, n): not c times a reciprocal formed first, one temporary and one
    rounding more; a reciprocal alone, 1/(1 + a**2), is one division too."""
    script = """
        from lstm_derive import Cell, sigmoid, tanh

        cell = Cell("normalised", title="A memory over a running normaliser")
        x = cell.input("x")
        c_prev, n_prev, h_prev = cell.state("c"), cell.state("n", positive=True), cell.state("h")
        a_f, a_z = cell.affine("W", [x, h_prev], blocks=["a_f", "a_z"])
        f = cell.let("f", sigmoid(a_f))
        c = cell.let("c_new", f * c_prev + tanh(a_z))
        n = cell.let("n_new", f * n_prev + 1)
        cell.update(c=c, n=n, h=c / n)
    """
    loop = _checked_loop(script)
    assert "np.divide(c_new, n_new, out=h)  # (6) h = c_new/n_new" in loop and "one/" not in loop
    loop = _checked_loop(script.replace("h=c / n", 'h=cell.let("q", 1 / (1 + a_z**2)) * c'))
    assert "np.divide(one, one + a_z**2, out=q)" in loop and "one/" not in loop
    # only a denominator as written: a*exp(-b) as a/exp(b) would overflow where exp(-b) does not
    import sympy

    from lstm_derive.emit.printing import _CodePrinter, _product_into

    a, b = sympy.symbols("a b")
    assert _product_into("q", a * sympy.exp(-b), _CodePrinter()) == "np.multiply(a, np.exp(-b), out=q)"
    assert _product_into("q", a / (1 + sympy.exp(-b)), _CodePrinter()) == "np.divide(a, 1 + np.exp(-b), out=q)"


def test_a_sum_that_starts_with_a_name_or_a_number_is_added_into_its_storage():
    """m = a_z + relu(v) and n = 1 + z + f*(n_prev - z): the first two terms with one np.add into the
    state's storage, not a fill of it and an addition."""
    loop = _checked_loop("""
        from lstm_derive import Cell, relu, sigmoid, tanh

        cell = Cell("summed", title="A normaliser and a floor")
        x = cell.input("x")
        h_prev, n_prev, m_prev = cell.state("h"), cell.state("n", positive=True), cell.state("m")
        a_f, a_z = cell.affine("W", [x, h_prev], blocks=["a_f", "a_z"])
        f = cell.let("f", sigmoid(a_f))
        z = cell.let("z", tanh(a_z))
        m = cell.let("m_new", a_z + relu(m_prev - a_z))
        n = cell.let("n_new", f * n_prev + (1 - f) * z + 1)
        cell.update(h=z * m / n, n=n, m=m)
    """)
    assert "np.add(a_z, relu0, out=m_new)" in loop and "np.add(z, one, out=n_new)" in loop
    assert "[...] = " not in loop


def test_a_block_whose_adjoint_is_a_states_is_summed_into_its_storage():
    """r = a_r: dr = dys[t] + dr_next is added into da_r's storage, which dr names, not formed
    and then copied there at every step; an ended sequence's dr still passes to its r_prev."""
    source = _checked_source(PROJECTED)
    step = source[source.index("for t in reversed(range(t0, t1)):"):source.index("# The weights' gradients")]
    assert "dr = da_r_seq[t]  # (11) dL/da_r = dL/dr: one array" in step
    assert "np.add(dys[t], dr_next, out=dr)  # (10) dL/dr" in step
    assert "da_r_seq[t] = " not in step and "dr_passing" not in step
    assert step.index("dr_next = np.where(ended[t], dr, dr_next)") < step.index("np.copyto(da_r_seq[t], 0")


NUMBERS = """
    from lstm_derive import Cell, sigmoid, tanh

    cell = Cell("numbered", title="A memory with numbers of its own")
    x = cell.input("x")
    h_prev, c_prev = cell.state("h"), cell.state("c")
    a_f, a_z = cell.affine("W", [x, h_prev], blocks=["a_f", "a_z"])
    f = cell.let("f", sigmoid(a_f))
    c = cell.let("c_new", 0.5 * c_prev + f * tanh(a_z) / 2 + 3 * f * c_prev)
    cell.update(c=c, h=tanh(c) * 0.2 - f / 3)
"""


def test_every_number_the_loops_read_is_an_array_made_once():
    """0.5, 3, 0.2 and 1/3 in the loops are 0-d arrays of x's dtype made before them, named for
    their values (a Python number is converted at every call); one a node's name takes is renamed."""
    source = _checked_source(NUMBERS)
    forward, backward = source.split("def backward(")
    loops = [forward[forward.index("for t in range(T):"):forward.index("\n    ys = ")],
             backward[backward.index("for t1 in range"):backward.index("# The weights' gradients")]]
    steps = [loops[0], loops[1][loops[1].index("for t in reversed"):]]
    code = "\n".join(line.split("#")[0] for step in steps for line in step.splitlines())
    assert not re.findall(r"(?<![\w.*])\d+\.\d+|(?<![\w.*])\d+/\d+|, \d+, out=", code), code
    assert "np.multiply(c_prev, half + three*f, out=c_new)" in forward and "h += num_0_2*tanh_c_new" in forward
    assert "np.array(0.2, x.dtype), np.array(0.5, x.dtype)" in forward and "np.divide(-f, three, out=h)" in forward
    assert "- third*dh  # (9) dL/df" in backward and "third = np.array(1/3, x.dtype)" in backward
    renamed = _checked_source(NUMBERS.replace('cell.let("f", sigmoid(a_f))', 'cell.let("half", sigmoid(a_f))'))
    assert "np.multiply(c_prev, half_value + three*half, out=c_new)" in renamed
    import sympy

    from lstm_derive.emit.printing import _CodePrinter, _Numbers

    a = sympy.Symbol("a")  # exponents stay numbers, negative ones too: x**2 is NumPy's square
    assert _CodePrinter(arrays=_Numbers(())).doprint(a**-2 + a**3 / 3) == "a**(-2) + a**3/three"


def test_the_passes_lines_fit_in_120_columns_but_where_they_cite_equations():
    """forward()'s and backward()'s lines in every packaged kernel: a comment says why in few words
    (the docstrings and the comments above a block say the rest); only a list of the equations a
    line implements, which the document's table reads, may run longer."""
    citation = re.compile(r"  # [(),\d ]+ (dL/|d\w+/d\w+ with its paths through )")
    kernels = Path(__file__).resolve().parents[1] / "lstm_derive" / "kernels"
    for path in sorted(kernels.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "def forward(" not in source:
            continue
        passes = source[source.index("def forward("):source.index("def step_forward(")]
        long = [line.strip() for line in passes.splitlines() if len(line) > 120 and not citation.search(line)]
        assert not long, f"{path.name}: {long}"
