/**
 * Text a plugin supplied (error messages, names, versions, event reasons, progress), made inert before
 * the CLI prints it for people: a terminal acts on control characters, so a plugin could otherwise
 * retitle the window (ESC ] 0 ; ... BEL), clear the screen (ESC [ 2 J) or forge hvplug's own lines.
 * C0 controls, DEL and C1 controls become visible \xNN escapes, which also defuses every ESC sequence
 * (its ESC is escaped). Line feeds and tabs stay where the text may span lines (an error message);
 * a single-line field (a name, a table cell) escapes them too. The guest's console is not passed through
 * here: it is the guest's own terminal output. JSON output needs none of this: JSON.stringify escapes
 * every control character.
 */
export function safeText(text: string, opts: { multiline?: boolean } = {}): string {
  const keep = opts.multiline === false ? '' : '\n\t';
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => (keep.includes(c) ? c : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/** A single-line field: line breaks and tabs escaped too, so the field cannot start a line of its own. */
export const safeLine = (text: string): string => safeText(text, { multiline: false });

/**
 * JSON text (a --json document, a log line) with DEL and the C1 controls written as \u escapes:
 * JSON.stringify escapes only U+0000-U+001F, and some terminals act on a raw C1 CSI (U+009B). The
 * document means the same: these characters can only occur inside JSON strings, where \u00XX is them.
 */
export function safeJson(json: string): string {
  return json.replace(/[\u007f-\u009f]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}
