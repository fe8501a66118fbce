/**
 * JSON syntax errors that say where and never quote the text: V8's messages
 * may carry a slice of the input (`Unexpected token 'x', "…" is not valid
 * JSON`), and a docker config.json holds passwords. Position becomes line
 * and column; the reason keeps only V8's fixed wording.
 */
export interface JsonSyntax {
  line: number | null;
  column: number | null;
  reason: string;
}

export function describeJsonError(text: string, err: unknown): JsonSyntax {
  const message = String((err as Error)?.message ?? err);
  const pos = /at position (\d+)/.exec(message);
  const at = pos ? Math.min(Number(pos[1]), text.length) : findPosition(text);
  let line: number | null = null;
  let column: number | null = null;
  if (at !== null) {
    const before = text.slice(0, at);
    line = before.split('\n').length;
    column = at - (before.lastIndexOf('\n') + 1) + 1;
  }
  let reason: string;
  if (/is not valid JSON/.test(message)) {
    // `Unexpected token 'x', "…" is not valid JSON`: V8 quotes the input here. Keep a punctuation token only.
    const tok = /^Unexpected token '(.)'/.exec(message)?.[1];
    reason = tok === undefined ? 'invalid JSON' : /[,:{}[\]]/.test(tok) ? `Unexpected token '${tok}'` : 'Unexpected token';
  } else {
    reason =
      message
        .replace(/\s*(?:in JSON\s*)?at position \d+[\s\S]*$/, '')
        .replace(/'[^']*'|"[^"]*"/g, (q) => (/^['"][,:{}[\]]['"]$/.test(q) ? q : '')) // quoted punctuation only
        .replace(/\s+/g, ' ')
        .trim() || 'invalid JSON';
  }
  return { line, column, reason };
}

/** "line 3, column 5: Expected ',' or '}' after property value" (no input text). */
export function formatJsonError(text: string, err: unknown): string {
  const d = describeJsonError(text, err);
  return d.line !== null ? `line ${d.line}, column ${d.column}: ${d.reason}` : d.reason;
}

/**
 * Where parsing fails when V8 does not say (its "Unexpected token" message
 * quotes the input instead): the longest prefix that is merely unfinished
 * ends right before the offending character. A binary search of parses.
 */
function findPosition(text: string): number | null {
  const unfinished = (k: number) => {
    try {
      JSON.parse(text.slice(0, k));
      return true;
    } catch (e) {
      const m = String((e as Error).message);
      const p = /at position (\d+)/.exec(m);
      return /Unexpected end of JSON input/.test(m) || (p !== null && Number(p[1]) >= k);
    }
  };
  if (!unfinished(0)) return null;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (unfinished(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo < text.length ? lo : null;
}
