"""LSTM with coupled input and forget gates, f = 1 - i: the coupling of Greff et al. 2015's CIFG, whose
LSTM has peepholes; this one has none (lstm_peephole.py has them, uncoupled).

One gate fewer than the LSTM: what the cell writes, it forgets in the same proportion.
Gate order i, g, o. Run it to read the derivation: python derivations/lstm_cifg.py
"""

from lstm_derive import Cell, explain, sigmoid, tanh

cell = Cell("lstm_cifg", title="LSTM with coupled input-forget gate (CIFG coupling as in Greff et al. 2015, without peepholes)")

x = cell.input("x")
h_prev, c_prev = cell.state("h"), cell.state("c")

a_i, a_g, a_o = cell.affine("W", [x, h_prev], blocks=["a_i", "a_g", "a_o"])
i = cell.let("i", sigmoid(a_i))  # input gate
f = cell.let("f", 1 - i)  # forget gate, coupled to the input gate
g = cell.let("g", tanh(a_g))  # candidate cell state
o = cell.let("o", sigmoid(a_o))  # output gate
c = cell.let("c", f * c_prev + i * g)  # new cell state
cell.update(c=c, h=o * tanh(c))  # h is also the step output

cell.note("With `f = 1 - i` the input gate reaches `c` twice, as itself and through `f`, so {di} is "
          "`-df + g*dc`; leaving out `-df` is the coupled gate's own mistake.")

if __name__ == "__main__":
    explain(cell)
