"""Elman RNN, h = tanh(W_x x + b_x + W_h h_prev + b_h), in torch.nn.RNN's layout.

PyTorch keeps one bias per input (bias_ih, bias_hh); so does this cell, so its parameters
map one to one onto nn.RNN's (see lstm_derive.torch_convert).
Run it to read the derivation: python derivations/rnn.py
"""

from lstm_derive import Cell, explain, tanh

cell = Cell("rnn", title="Elman RNN (tanh)")

x = cell.input("x")
h_prev = cell.state("h")

(a,) = cell.affine("W", [x, h_prev], blocks=["a"], bias=["b_x", "b_h"])
cell.update(h=tanh(a))  # h is also the step output

cell.note("{db_x} and {db_h} are the same sum: only `b_x + b_h` enters the cell, so the two biases "
          "always get equal gradients (PyTorch keeps both, and so does this cell, to map onto nn.RNN).")

if __name__ == "__main__":
    explain(cell)
