"""Elman RNN with ReLU, h = relu(W_x x + b_x + W_h h_prev + b_h), in the layout of
torch.nn.RNN(nonlinearity='relu').

Le, Jaitly & Hinton's IRNN (2015) is this cell started with W_h the identity and zero biases.
Unlike the gated cells, its state is unbounded: a W_h that stretches vectors grows h step by step.
Run it to read the derivation: python derivations/rnn_relu.py
"""

from lstm_derive import Cell, explain, relu

cell = Cell("rnn_relu", title="Elman RNN (ReLU)")

x = cell.input("x")
h_prev = cell.state("h")

(a,) = cell.affine("W", [x, h_prev], blocks=["a"], bias=["b_x", "b_h"])
cell.update(h=relu(a))  # h is also the step output

cell.note("{db_x} and {db_h} are the same sum: only `b_x + b_h` enters the cell, so the two biases "
          "always get equal gradients (PyTorch keeps both, and so does this cell, to map onto nn.RNN).")
cell.note("relu'(a) = [a > 0] is read off the output h, as `[h > 0]`: h > 0 exactly where a > 0. At a = 0 "
          "the derivative is taken as 0, as PyTorch does.")

if __name__ == "__main__":
    explain(cell)
