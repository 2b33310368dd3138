"""finercam.report: a self-contained folder whose images and tables read back exactly."""
import os
from html.parser import HTMLParser

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from finercam.report import Report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.cells, self.scripts, self._in = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        for key in ("src", "href"):
            if key in d:
                self.links.append(d[key])
        if tag == "script":
            self.scripts += 1
        if tag in ("td", "th"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in = None

    def handle_data(self, data):
        if self._in:
            self.cells.append(data)


def test_report_folder_is_self_contained(tmp_path):
    r = Report(tmp_path / "rep", "Finer <test> & co")
    r.heading("Figures")
    r.text("first <b>para</b>\n\nsecond")
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, 1])
    p1 = r.figure(fig, "line", caption="a line")
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    p2 = r.figure(arr, "array")
    flt = np.array([[0.0, 0.5, 1.0]], np.float32)
    p3 = r.figure(flt, "float-map")
    r.table([["Grad-CAM", 0.12345, 7], ["+ Finer", float("nan"), "x<y"]],
            header=["method", "RD@5%", "n"], caption="numbers", best=[(0, 1)])
    r.code("finercam demo --quick")
    index = r.write()

    assert index == tmp_path / "rep" / "index.html"
    text = index.read_text(encoding="utf-8")
    parser = _Collect()
    parser.feed(text)
    assert parser.scripts == 0
    assert sorted(parser.links) == ["array.png", "float-map.png", "line.png"]
    for link in parser.links:
        assert "/" not in link and ":" not in link
        assert (tmp_path / "rep" / link).is_file()
    assert parser.cells == ["method", "RD@5%", "n", "Grad-CAM", "0.123", "7", "+ Finer", "n/a",
                            "x<y"]
    assert "Finer &lt;test&gt; &amp; co" in text and "&lt;b&gt;para&lt;/b&gt;" in text
    assert '<td class="best">0.123</td>' in text

    np.testing.assert_array_equal(np.asarray(Image.open(p2)), arr)
    np.testing.assert_array_equal(np.asarray(Image.open(p3)), [[0, 128, 255]])
    with Image.open(p1) as im:
        im.verify()
        assert im.size == (220, 220)  # 2 inches at 110 dpi


def test_report_rejects_bad_names_and_rows(tmp_path):
    r = Report(tmp_path, "t")
    r.figure(np.zeros((2, 2), np.uint8), "a")
    with pytest.raises(ValueError, match="already used"):
        r.figure(np.zeros((2, 2), np.uint8), "a")
    for bad in ("../up", "x.png", "", "sp ace"):
        with pytest.raises(ValueError, match="name"):
            r.figure(np.zeros((2, 2), np.uint8), bad)
    with pytest.raises(ValueError, match="rows"):
        r.table([[1, 2]], header=["one"])
    with pytest.raises(ValueError, match="shape"):
        r.figure(np.zeros((2, 2, 5), np.uint8), "b")
    with pytest.raises(TypeError, match="title"):
        Report(tmp_path, None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        Report(tmp_path / "file", "t")


def test_readme_pictures_block_runs(tmp_path, monkeypatch):
    """The README's "Pictures" Python block runs and writes its report."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Pictures"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["blend"].shape == (32, 32, 3)
    assert env["index"] == pathlib.Path("out/mine/index.html")
    with Image.open(tmp_path / "out" / "mine" / "row.png") as im:
        assert np.asarray(im.convert("L")).std() > 10
    assert len(env["sweep"].axes) == 4


def test_link_and_embed_escape_and_check_their_href(tmp_path):
    r = Report(tmp_path, "t")
    r.link("a <view>", 'x".html')
    r.embed("v.html", "caption & more", height=300)
    page = r.html()
    assert '<a href="x&quot;.html">a &lt;view&gt;</a>' in page
    assert '<iframe src="v.html" title="caption &amp; more" style="width:100%;height:300px' in page
    for bad in (None, 3, ""):
        with pytest.raises(TypeError, match="href"):
            r.link("x", bad)
        with pytest.raises(TypeError, match="href"):
            r.embed(bad, "c")
