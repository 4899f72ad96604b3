// Parses TeX math with MathJax 3 (the renderer behind GitHub's math) and diagrams with
// Mermaid's own parser. Mermaid sanitizes labels with DOMPurify, which needs a DOM: jsdom's.
//
// stdin:  {"tex": [{"id": ..., "tex": ..., "display": true, "packages": ["base", "ams"]}],
//          "mermaid": [{"id": ..., "source": ...}]}
// stdout: {"tex": {id: error message or null}, "mermaid": {id: error message or null}}
//
// TeX errors are thrown rather than typeset in red, and only the packages asked for are loaded,
// so an undefined macro, an unbalanced brace or a misplaced & is an error.

import { mathjax } from "mathjax-full/js/mathjax.js";
import { TeX } from "mathjax-full/js/input/tex.js";
import { liteAdaptor } from "mathjax-full/js/adaptors/liteAdaptor.js";
import { RegisterHTMLHandler } from "mathjax-full/js/handlers/html.js";
import { STATE } from "mathjax-full/js/core/MathItem.js";
import "mathjax-full/js/input/tex/base/BaseConfiguration.js";
import "mathjax-full/js/input/tex/ams/AmsConfiguration.js";
import { JSDOM } from "jsdom";

const { window } = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import("mermaid");

RegisterHTMLHandler(liteAdaptor());
const documents = new Map();

function mathDocument(packages) {
  const key = packages.join(",");
  if (!documents.has(key)) {
    const tex = new TeX({ packages, formatError: (jax, error) => { throw error; } });
    documents.set(key, mathjax.document("", { InputJax: tex }));
  }
  return documents.get(key);
}

function parseTex({ tex, display = true, packages = ["base", "ams"] }) {
  try {
    mathDocument(packages).convert(tex, { display, end: STATE.CONVERT });
    return null;
  } catch (error) {
    return String(error.message || error);
  }
}

// Every edge of the documents' diagrams is a dependency, drawn with its head; Mermaid parses
// some arrows it cannot draw (`a <-.- b`) as a line with no head, and says nothing.
async function parseMermaid({ source }) {
  try {
    await mermaid.parse(source);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(source);
    const headless = (diagram.db.getEdges ? diagram.db.getEdges() : [])
      .filter((e) => e.type === "arrow_open" && e.stroke !== "invisible");  // a ~~~ link only guides the layout
    return headless.length ? `edges drawn without a head: ${headless.map((e) => `${e.start} - ${e.end}`).join(", ")}` : null;
  } catch (error) {
    return String(error.message || error);
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const result = { tex: {}, mermaid: {} };
for (const item of request.tex || []) result.tex[item.id] = parseTex(item);
mermaid.initialize({ startOnLoad: false });
for (const item of request.mermaid || []) result.mermaid[item.id] = await parseMermaid(item);
process.stdout.write(JSON.stringify(result));
