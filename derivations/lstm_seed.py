"""The seed's LSTM (nicodjimenez/lstm): xc = [x; h_prev], gates g, i, f, o, and h = s*o.

There is no tanh on s: this is the cell whose backward pass the seed derives,
ds = o*dh + ds_next. Run it to read the derivation: python derivations/lstm_seed.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("lstm_seed", title="The seed's LSTM (nicodjimenez/lstm): h = s*o, no tanh on the cell state")

x = cell.input("x")
h_prev, s_prev = cell.state("h"), cell.state("s")

a_g, a_i, a_f, a_o = cell.affine("W", [x, h_prev], blocks=["a_g", "a_i", "a_f", "a_o"])
g = cell.let("g", tanh(a_g))  # candidate
i = cell.let("i", sigmoid(a_i))  # input gate
f = cell.let("f", sigmoid(a_f))  # forget gate
o = cell.let("o", sigmoid(a_o))  # output gate
s = cell.let("s", g * i + s_prev * f)  # new cell state
cell.update(s=s, h=s * o)  # h is also the step output

# Two "fixes" the seed's users proposed. Both train its toy problem (4 steps, 100 iterations of
# SGD, benchmarks/seed_lstm.py) to a lower loss than the correct gradient does, 2.6e-06.
cell.note("The seed's code multiplies its wg, wi, wf, wo by xc = `[x; h_prev]`: they are the row "
          "blocks of `[W_x W_h]` in the order g, i, f, o, and its bg, bi, bf, bo those of `b`. Compare "
          "its dwg with the first H rows of both `dW_x` and `dW_h`, side by side, not with `dW_x` alone.")
cell.note("Dropping `ds_next` from {ds}, i.e. `ds = o*dh`, lowers the loss of the seed's toy problem "
          "(nicodjimenez/lstm's example: 4 steps, 100 iterations of SGD, benchmarks/seed_lstm.py) at its "
          "last iteration to 6.1e-09, where training with the correct gradient reaches 2.6e-06, and breaks the "
          "gradient: the "
          "later losses that reach `s` through `s_prev` of the next step are lost, and central "
          "differences disagree with it.")
cell.note("Adding tanh on `s` in the forward pass only, `h = o*tanh(s)` with this backward pass, lowers "
          "the toy loss to 6.3e-07 and breaks the gradient too: that cell needs "
          "`ds = o*(1 - tanh(s)**2)*dh + ds_next` in {ds} and `do = tanh(s)*dh` in {do}. Change the "
          "forward equation here and regenerate instead (derivations/lstm.py is that cell, with its blocks "
          "in the order i, f, g, o and its cell state named c).")
cell.note("A lower training loss proves nothing about a gradient; a finite-difference check does "
          "(`lstm-derive check lstm_seed`, and tests/test_references.py for the two fixes).")

if __name__ == "__main__":
    explain(cell)
