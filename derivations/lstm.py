"""LSTM with a forget gate (Gers et al. 2000), in PyTorch's gate order i, f, g, o.

Run it to read the derivation: python derivations/lstm.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("lstm", title="LSTM with forget gate (Gers et al. 2000)")

x = cell.input("x")
h_prev, c_prev = cell.state("h"), cell.state("c")

a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
i = cell.let("i", sigmoid(a_i))  # input gate
f = cell.let("f", sigmoid(a_f))  # forget gate
g = cell.let("g", tanh(a_g))  # candidate cell state
o = cell.let("o", sigmoid(a_o))  # output gate
c = cell.let("c", f * c_prev + i * g)  # new cell state
cell.update(c=c, h=o * tanh(c))  # h is also the step output

cell.note("The order i, f, g, o is PyTorch's: torch.nn.LSTM's weight_ih is `W_x` and its weight_hh is `W_h`, "
          "each as it is, and `b` is bias_ih + bias_hh (only their sum enters the cell; "
          "lstm_derive.torch_convert converts them both ways).")

if __name__ == "__main__":
    explain(cell)
