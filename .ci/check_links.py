#!/usr/bin/env python3
"""Checks the links of a built HTML site (the mdBook output), stdlib only.

usage: python3 .ci/check_links.py book/book

Every relative href/src must name an existing file, and a #fragment must name an id (or
<a name>) in the target page. External links (http, https, mailto, ...) are not fetched,
only listed. Exits 1 if any link is broken.
"""
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL_SCHEMES = {"http", "https", "mailto", "ftp", "tel"}
IGNORED_SCHEMES = {"data", "javascript", "about", "blob"}


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []  # (tag, attr, value, line)
        self.ids = set()
        self.base = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name" if tag == "a" else None):
            if key and a.get(key):
                self.ids.add(a[key])
        if tag == "base" and a.get("href"):
            self.base = a["href"]
        for attr in ("href", "src"):
            if a.get(attr) is not None:
                self.links.append((tag, attr, a[attr], self.getpos()[0]))

    handle_startendtag = handle_starttag


def parse(path, cache={}):
    if path not in cache:
        p = Page()
        p.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = p
    return cache[path]


def main(root):
    root = Path(root).resolve()
    if not root.is_dir():
        print(f"check_links: {root} is not a folder (build the book first)")
        return 1
    broken, external, checked = [], set(), 0
    pages = sorted(root.rglob("*.html"))
    for page_path in pages:
        page = parse(page_path)
        base_dir = page_path.parent
        if page.base is not None:
            b = urlsplit(page.base)
            if not b.scheme:
                base_dir = root if b.path.startswith("/") else (page_path.parent / b.path)
        for tag, attr, value, line in page.links:
            value = value.strip()
            url = urlsplit(value)
            if url.scheme in EXTERNAL_SCHEMES or value.startswith("//"):
                external.add(value)
                continue
            if url.scheme in IGNORED_SCHEMES or (url.scheme and url.scheme != "file"):
                continue
            checked += 1
            where = f"{page_path.relative_to(root)}:{line} <{tag} {attr}=\"{value}\">"
            if url.path:
                p = unquote(url.path)
                target = (root / p.lstrip("/")) if p.startswith("/") else (base_dir / p)
                target = target.resolve()
                if target.is_dir():
                    target = target / "index.html"
                if not str(target).startswith(str(root)):
                    broken.append(f"{where}: points outside the book")
                    continue
                if not target.is_file():
                    broken.append(f"{where}: no file {target.relative_to(root)}")
                    continue
            else:
                target = page_path
            frag = unquote(url.fragment)
            if frag and target.suffix == ".html" and frag not in parse(target).ids:
                broken.append(f"{where}: no id '{frag}' in {target.relative_to(root)}")

    for link in sorted(external):
        print(f"external (not checked): {link}")
    print(f"check_links: {len(pages)} pages, {checked} internal links, "
          f"{len(external)} external, {len(broken)} broken")
    for b in broken:
        print(f"BROKEN {b}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "book/book"))
