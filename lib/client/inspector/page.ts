// The inspector's page: HTML, style and script, shipped in the package (no CDN).

export const PAGE_HTML = "<!doctype html><title>Gotunnel inspector</title>";
export const PAGE_SCRIPT = "";
export const PAGE_STYLE = "";
