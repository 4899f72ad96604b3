"""The seed's LSTM (nicodjimenez/lstm): xc = [x; h_prev], gates g, i, f, o, and h = s*o.

There is no tanh on s: this is the cell whose backward pass the seed derives,
ds = o*dh + ds_next. Run it to read the derivation: python derivations/lstm_seed.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("lstm_seed", title="The seed's LSTM: h = s*o, no tanh on the cell state")

x = cell.input("x")
h_prev, s_prev = cell.state("h"), cell.state("s")

a_g, a_i, a_f, a_o = cell.affine("W", [x, h_prev], blocks=["a_g", "a_i", "a_f", "a_o"])
g = cell.let("g", tanh(a_g))  # candidate
i = cell.let("i", sigmoid(a_i))  # input gate
f = cell.let("f", sigmoid(a_f))  # forget gate
o = cell.let("o", sigmoid(a_o))  # output gate
s = cell.let("s", g * i + s_prev * f)  # new cell state
cell.update(s=s, h=s * o)  # h is also the step output

if __name__ == "__main__":
    explain(cell)
