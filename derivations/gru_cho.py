"""GRU with the reset gate before the recurrent matmul (Cho et al. 2014; ONNX linear_before_reset=0).

    a_r, a_z = W_x x + W_h h_prev + b         (blocks of H rows, r first)
    r = sigmoid(a_r),  z = sigmoid(a_z)
    n = tanh(W_n_x x + W_n_rh (r * h_prev) + b_n)
    h = (1 - z) * n + z * h_prev

The reset gate scales h_prev itself, so the candidate's recurrent matmul reads the product
rh = r * h_prev, a second affine node. Run it to read the derivation: python derivations/gru_cho.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("gru_cho", title="GRU, reset before the recurrent matmul (Cho et al. 2014)")

x = cell.input("x")
h_prev = cell.state("h")

a_r, a_z = cell.affine("W", [x, h_prev], blocks=["a_r", "a_z"])
r = cell.let("r", sigmoid(a_r))  # reset gate
z = cell.let("z", sigmoid(a_z))  # update gate
rh = cell.let("rh", r * h_prev)  # the reset previous state
(a_n,) = cell.affine("W_n", [x, rh], blocks=["a_n"], bias="b_n")
n = cell.let("n", tanh(a_n))  # candidate
cell.update(h=(1 - z) * n + z * h_prev)  # h is also the step output

cell.note("The reset acts before the matmul: {drh} forms `drh = W_n_rh^T·da_n` first, and `r` and "
          "`h_prev` then share it elementwise, in {dr} and {dh_prev}; {dW_n_rh} pairs "
          "`da_n` with `rh = r*h_prev`, not with `h_prev`.")

cell.note("Names differ between GRU forms: here `W_x`, `W_h` hold the weights of r and z alone, and "
          "`W_n_x`, `W_n_rh` the candidate's; gru.py, the reset-after form of PyTorch, stacks all three "
          "gates' input weights in its W_x and their recurrent weights in U_h.")
cell.note("Sources that write `h = (1 - z)*h_prev + z*n`, as Chung et al. 2014 do, swap the roles of z and 1 - z: "
          "their `dz` is the negative of {dz}'s `(h_prev - n)*dh`. Cho et al. 2014 write it as here. Check which "
          "convention a formula uses before comparing signs.")

if __name__ == "__main__":
    explain(cell)
