"""GRU in the PyTorch/cuDNN form: the reset gate applies after the recurrent matmul.

    a_xr, a_xz, a_xn = W_x x + b_x,  a_hr, a_hz, a_hn = U_h h_prev + b_h   (blocks of H rows)
    r = sigmoid(a_xr + a_hr)
    z = sigmoid(a_xz + a_hz)
    n = tanh(a_xn + r * a_hn)
    h = (1 - z) * n + z * h_prev

Gate order r, z, n, as torch.nn.GRU: W_x is weight_ih (PyTorch's W_ir, W_iz, W_in stacked), U_h
is weight_hh (W_hr, W_hz, W_hn), b_x is bias_ih and b_h is bias_hh. Run it to read the derivation: python derivations/gru.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("gru", title="GRU, reset after the recurrent matmul (PyTorch, cuDNN)")

x = cell.input("x")
h_prev = cell.state("h")

a_xr, a_xz, a_xn = cell.affine("W", [x], blocks=["a_xr", "a_xz", "a_xn"], bias="b_x")
a_hr, a_hz, a_hn = cell.affine("U", [h_prev], blocks=["a_hr", "a_hz", "a_hn"], bias="b_h")
a_r = cell.let("a_r", a_xr + a_hr)
r = cell.let("r", sigmoid(a_r))  # reset gate
a_z = cell.let("a_z", a_xz + a_hz)
z = cell.let("z", sigmoid(a_z))  # update gate
a_n = cell.let("a_n", a_xn + r * a_hn)  # the reset applies to U_hn·h_prev + b_hn
n = cell.let("n", tanh(a_n))  # candidate
cell.update(h=(1 - z) * n + z * h_prev)  # h is also the step output

cell.note("The reset multiplies `a_hn = U_hn·h_prev + b_hn` (U_hn and b_hn: the n rows, 2H to 3H, of U_h "
          "and b_h), its bias included: {dr} reads the stored "
          "`a_hn`, and the n rows of `db_h` in {db_h} sum {da_hn}'s `da_hn = r*da_n`, while those of `db_x` "
          "sum {da_xn}'s `da_xn = da_n`; the r and z rows of the two bias gradients are equal.")
cell.note("Names differ between GRU forms: here `W_x` holds the input weights of r, z and n, and `U_h` "
          "the recurrent ones, and `b_x`, `b_h` their biases, as PyTorch's weight_ih, weight_hh, bias_ih and bias_hh; gru_cho.py, the reset-before form, "
          "has W_x, W_h for r and z alone and W_n_x, W_n_rh for the candidate.")
cell.note("Sources that write `h = (1 - z)*h_prev + z*n` swap the roles of z and 1 - z: their `dz` is "
          "the negative of {dz}'s `(h_prev - n)*dh`. Check which convention a formula uses before "
          "comparing signs.")

if __name__ == "__main__":
    explain(cell)
