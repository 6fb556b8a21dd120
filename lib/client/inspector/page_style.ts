// The inspector page's style: light and dark, a list beside the detail on wide
// screens, one at a time down to 360 px.

/** `/inspector.css`. */
export const PAGE_STYLE = String.raw`:root {
  --bg: #fff; --fg: #1b1f24; --muted: #5f6b7a; --line: #d8dee4; --pane: #f6f8fa;
  --accent: #0b62d6; --selected: #ddeaff; --ok: #1a7f37; --redirect: #0a7ea4;
  --client: #9a6700; --server: #cf222e; --code: #f3f4f6;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d; --pane: #161b22;
    --accent: #4493f8; --selected: #1f3a5f; --ok: #3fb950; --redirect: #39c5cf;
    --client: #d29922; --server: #f85149; --code: #1c2128;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
header, #filters { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 12px;
  padding: 8px 12px; border-bottom: 1px solid var(--line); }
header { background: var(--pane); }
h1 { font-size: 16px; margin: 0; }
#tunnel { color: var(--muted); overflow-wrap: anywhere; flex: 1 1 12em; }
nav { display: flex; gap: 8px; }
a { color: var(--accent); }
button, nav a, input, select, textarea {
  font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 4px 10px; min-height: 32px;
}
nav a { text-decoration: none; display: inline-flex; align-items: center; }
button { cursor: pointer; }
button:hover, nav a:hover { border-color: var(--accent); }
#q { flex: 1 1 14em; min-width: 0; }
#count { color: var(--muted); font-size: 12px; }
main { display: grid; grid-template-columns: minmax(0, 1fr); }
body.open main { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
#list-pane { overflow: auto; max-height: calc(100vh - 96px); }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
th { position: sticky; top: 0; background: var(--pane); font-weight: 600; font-size: 12px; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: var(--pane); }
tbody tr.selected { background: var(--selected); }
.c-time { width: 7.5em; } .c-method { width: 6.5em; } .c-status { width: 5.5em; }
.c-duration { width: 7em; text-align: right; } .c-size { width: 8.5em; text-align: right; }
.c-visitor { width: 12.5em; }
td { font-variant-numeric: tabular-nums; }
td.c-duration, td.c-size { text-align: right; font-variant-numeric: tabular-nums; }
.s2 { color: var(--ok); } .s3 { color: var(--redirect); } .s4 { color: var(--client); }
.s5, .snone { color: var(--server); } .s1 { color: var(--accent); }
.replay { color: var(--muted); }
.tunnel { color: var(--muted); font-weight: 600; }
#empty { color: var(--muted); padding: 16px 12px; }
#detail { border-left: 1px solid var(--line); padding: 8px 12px; overflow: auto;
  max-height: calc(100vh - 96px); min-width: 0; }
.bar { display: flex; align-items: center; gap: 8px; }
#back { display: none; }
#d-title { font-size: 15px; margin: 4px 0; overflow-wrap: anywhere; }
#d-actions, .row { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
#d-note { color: var(--muted); min-height: 1.4em; margin: 4px 0; }
h3 { font-size: 13px; margin: 16px 0 4px; text-transform: uppercase; color: var(--muted); }
pre, textarea#d-curl { background: var(--code); border: 1px solid var(--line); border-radius: 6px;
  padding: 8px; margin: 4px 0; font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 60vh; overflow: auto; }
textarea#d-curl { width: 100%; min-height: 6em; }
.views { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin: 6px 0; }
.views button { min-height: 28px; padding: 2px 8px; font-size: 12px; }
.views button[aria-pressed="true"] { border-color: var(--accent); color: var(--accent); }
.facts { color: var(--muted); font-size: 12px; }
.form-fields { border-collapse: collapse; table-layout: auto; }
.form-fields td { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace;
  font-size: 12px; }
#editor label { display: flex; flex-direction: column; gap: 2px; font-size: 12px; color: var(--muted); }
#editor .grow { flex: 1 1 12em; }
#editor textarea, #editor input { width: 100%; color: var(--fg);
  font: 12px/1.4 ui-monospace, monospace; }
@media (max-width: 800px) {
  body.open main { grid-template-columns: minmax(0, 1fr); }
  body.open #list-pane { display: none; }
  #detail { border-left: 0; max-height: none; }
  #back { display: inline-block; }
  .c-visitor, .c-size { display: none; }
}
@media (max-width: 520px) {
  .c-duration, .c-time { display: none; }
  .c-method { width: 4.5em; } .c-status { width: 4em; }
  header, #filters { padding: 6px 8px; }
}
`;
