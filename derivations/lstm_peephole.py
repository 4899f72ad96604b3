"""LSTM with diagonal peephole connections (Gers & Schmidhuber 2000), the equations of ONNX's and
TensorFlow's peephole LSTMs (not their weight layouts: ONNX stacks the gates i, o, f, c, and
TensorFlow i, j, f, o, with a forget bias of 1 added).

The input and forget gates look at the previous cell state, the output gate at the new one,
each through an elementwise weight vector: p_i * c_prev, p_f * c_prev, p_o * c.
Gate order i, f, g, o. Run it to read the derivation: python derivations/lstm_peephole.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("lstm_peephole", title="LSTM with peephole connections (Gers & Schmidhuber 2000)")

x = cell.input("x")
h_prev, c_prev = cell.state("h"), cell.state("c")

a_i, a_f, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_f", "a_g", "a_o"])
p_i, p_f, p_o = cell.param("p_i"), cell.param("p_f"), cell.param("p_o")  # peepholes
i = cell.let("i", sigmoid(a_i + p_i * c_prev))  # input gate
f = cell.let("f", sigmoid(a_f + p_f * c_prev))  # forget gate
g = cell.let("g", tanh(a_g))  # candidate cell state
c = cell.let("c", f * c_prev + i * g)  # new cell state
o = cell.let("o", sigmoid(a_o + p_o * c))  # output gate, looking at the new cell state
cell.update(c=c, h=o * tanh(c))  # h is also the step output

cell.note("`o` reads the new `c`, so `da_o` in {da_o} comes before `dc` in {dc}, which takes `p_o*da_o` "
          "besides the path through `h`; dropping it, or `p_i*da_i + p_f*da_f` in {dc_prev}, loses the "
          "peepholes' paths back to the cell.")

if __name__ == "__main__":
    explain(cell)
