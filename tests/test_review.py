"""`qhawkeye data review`: the decision store and combine rule, the app over real HTTP, the page in Chromium.

The store, the combine rule and the stage's folder checks are tested directly. The rest runs one review
server subprocess per module (``python -m qhawkeye.review.main``, what ``qhawkeye data review`` runs) over a
filter-stage folder of real PNG pairs, driven over loopback HTTP (urllib, http.client) and by a real headless
Chromium through selenium (Debian's ``chromium`` and ``chromium-driver``; those tests skip only when the
browser is not installed).

The server's database is shared by the module's tests, so each test votes under its own reviewer names, and
tests that combine reviewers use pairs no other test votes on (p6, sub/p8).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from qhawkeye.data.manifest import read_records, write_records
from qhawkeye.review.main import ReviewConfig, add_arguments, export
from qhawkeye.review.pairs import review_pairs
from qhawkeye.review.store import ReviewStore, combine_votes, combined_decisions

YES, NO = "perceptible", "imperceptible"  # "can you see a difference?"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--window-size=1280,900",
)
# (id, filter.flagged): None is "the filter could not decide", reviewed like a flagged pair.
PAIRS = [
    ("p1", True),
    ("ok1", False),
    ("p2", True),
    ("p3", True),
    ("p4", True),
    ("ok2", False),
    ("p5", True),
    ("p6", True),
    ("p7", None),
    ("sub/p8", True),
]
UNDER_REVIEW = [pair_id for pair_id, flagged in PAIRS if flagged is not False]


# ---------------------------------------------------------------------------------------------- fixtures


def make_filter_stage(root: Path) -> Path:
    """A degrade folder of PNG pairs (a noise image and its blurred copy) and a filter stage over it."""
    images, rng = root / "degrade" / "images", np.random.default_rng(0)
    images.mkdir(parents=True)
    records = []
    for n, (pair_id, flagged) in enumerate(PAIRS):
        original = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        original.save(images / f"{n}.png")
        original.filter(ImageFilter.GaussianBlur(1.5)).save(images / f"{n}-blur.png")
        records.append(
            {
                "id": pair_id,
                "group_id": f"toy/{pair_id}",
                "source": "toy",
                "image": str((images / f"{n}.png").resolve()),
                "degraded": str((images / f"{n}-blur.png").resolve()),
                "degradation": "blur",
                "gt_score": 3.0,
                "filter": {"mode": "test", "flagged": flagged, "raw": ["same"]},
            }
        )
    # the stage chain the review app checks image paths against: ingest (its image roots) -> degrade -> filter
    ingest = [{k: v for k, v in r.items() if k not in ("degraded", "degradation", "filter")} for r in records]
    write_records(root / "ingest", ingest, stage="ingest", params={"image_roots": [str(images.resolve())]})
    degraded = [{k: v for k, v in r.items() if k != "filter"} for r in records]
    write_records(root / "degrade", degraded, stage="degrade", params={}, source=root / "ingest")
    write_records(root / "filter", records, stage="filter", params={"mode": "test"}, source=root / "degrade")
    return root / "filter"


def tree_digest(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """The review server subprocess; ``start`` and ``stop`` keep the same folder and port."""

    filter_dir: Path
    out: Path
    port: int
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [str(self.filter_dir), "--out", str(self.out), "--port", str(self.port)]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qhawkeye.review.main", *args], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"review server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/api/info", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"review server not up after 60 s:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    filter_dir = make_filter_stage(root)
    return root, filter_dir, tree_digest(root / "degrade", filter_dir)


@pytest.fixture(scope="module")
def server(stage):
    root, filter_dir, _ = stage
    srv = Server(filter_dir, root / "review", _free_port(), root / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "needs Chromium and its driver: apt-get install chromium chromium-driver (CI installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def get_json(server: Server, path: str):
    with urllib.request.urlopen(server.url + path, timeout=10) as response:
        return json.loads(response.read())


def post_json(server: Server, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def vote(server: Server, pair_id: str, reviewer: str, decision: str) -> int:
    """POST one decision; the HTTP status."""
    body = {"pair_id": pair_id, "reviewer": reviewer, "decision": decision}
    return post_json(server, "/api/decision", body)[0]


def raw_get(server: Server, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (http.client does not normalise ``..`` or %-escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def my_decisions(server: Server, reviewer: str) -> dict:
    pairs = get_json(server, f"/api/pairs?reviewer={reviewer}")["pairs"]
    return {p["id"]: p["decision"] for p in pairs if p["decision"]}


# ---------------------------------------------------------------------------------------------- page helpers


def wait_for(driver, predicate, what: str, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: predicate(d), message=f"page never showed {what}")


def text_of(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def wait_for_pair(driver, pair_id: str, progress: str) -> None:
    """Wait until the page shows ``pair_id`` with progress ``progress``, and both images loaded."""
    wait_for(
        driver,
        lambda d: (
            text_of(d, "pair-id") == pair_id
            and text_of(d, "progress-text") == progress
            and d.execute_script(
                "return ['img-original', 'img-degraded'].every(i => document.getElementById(i).complete "
                "&& document.getElementById(i).naturalWidth === 64)"
            )
        ),
        f"pair {pair_id} with '{progress}'",
    )


def press(driver, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def shown_decision(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "current-decision").get_attribute("data-decision")


def transforms(driver) -> list[str]:
    return driver.execute_script(
        "return ['img-original', 'img-degraded'].map(i => document.getElementById(i).style.transform)"
    )


# ---------------------------------------------------------------------------------------------- store and rule


@pytest.mark.parametrize(
    "votes, expected",
    [
        ({}, None),  # nobody voted
        ({"a": YES}, YES),
        ({"a": YES, "b": NO}, None),  # one against one: a tie
        ({"a": YES, "b": YES, "c": NO}, YES),  # two of three
        ({"a": NO, "b": NO, "c": YES, "d": YES}, None),  # two against two
        ({"a": NO, "b": NO, "c": NO, "d": YES}, NO),
    ],
)
def test_combine_votes_is_a_strict_majority(votes, expected):
    assert combine_votes(votes) == expected


def test_store_replaces_and_undoes_in_order(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    store.record("a", "ann", YES)
    store.record("b", "ann", NO)
    store.record("a", "ann", NO)  # ann changes her mind on a
    store.record("a", "bob", YES)
    assert store.reviewer_decisions("ann") == {"a": NO, "b": NO}
    assert store.undo("ann") == {"pair_id": "a", "decision": YES}  # back to her first answer
    assert store.undo("ann") == {"pair_id": "b", "decision": None}
    assert store.undo("ann") == {"pair_id": "a", "decision": None}
    assert store.undo("ann") is None
    assert store.reviewer_decisions("ann") == {}
    assert store.votes() == {"a": {"bob": YES}}  # bob's vote is his own


def test_store_is_wal_and_survives_reopening(tmp_path):
    ReviewStore(tmp_path / "r.sqlite").record("a", "ann", YES)
    store = ReviewStore(tmp_path / "r.sqlite")
    assert store.journal_mode() == "wal"
    assert store.reviewer_decisions("ann") == {"a": YES}
    assert store.undo("ann") == {"pair_id": "a", "decision": None}  # the history was kept too


def test_store_takes_concurrent_writes_from_threads(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")

    def vote(reviewer: str) -> None:
        for n in range(20):
            store.record(f"pair{n}", reviewer, YES if n % 2 else NO)
        store.undo(reviewer)  # undoes pair19

    threads = [threading.Thread(target=vote, args=(f"r{k}",)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes = store.votes()
    assert sorted(votes) == sorted(f"pair{n}" for n in range(19))
    assert all(len(v) == 8 for v in votes.values())


@pytest.mark.parametrize(
    "reviewer, decision", [("", YES), (" ", YES), ("a" * 65, YES), ("x\ny", YES), ("ann", "maybe")]
)
def test_store_rejects_bad_names_and_decisions(tmp_path, reviewer, decision):
    with pytest.raises(ValueError, match="reviewer name|decision"):
        ReviewStore(tmp_path / "r.sqlite").record("a", reviewer, decision)


def test_combined_decisions_cover_the_given_pairs(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    for reviewer, decision in (("ann", YES), ("bob", NO), ("cy", YES)):
        store.record("a", reviewer, decision)
    store.record("b", "ann", NO)
    store.record("b", "bob", YES)
    store.record("gone", "ann", YES)
    assert combined_decisions(store, ["a", "b", "c"]) == {
        "a": {"decision": YES, "votes": {"ann": YES, "bob": NO, "cy": YES}},
        "b": {"decision": None, "votes": {"ann": NO, "bob": YES}},
        "c": {"decision": None, "votes": {}},
    }
    assert set(combined_decisions(store)) == {"a", "b", "gone"}


# ---------------------------------------------------------------------------------------------- stage folders


def test_review_pairs_are_the_flagged_and_undecided_ones(stage):
    assert [p.id for p in review_pairs(stage[1])] == UNDER_REVIEW


def test_review_refuses_a_manifest_without_filter_results(tmp_path):
    record = {"id": "a", "group_id": "g", "gt_score": 3.0, "image": "/x.png", "degraded": "/y.png"}
    write_records(tmp_path / "degrade", [record], "degrade", {})
    with pytest.raises(ValueError, match=r"record 1: no 'filter' field.*qhawkeye data filter"):
        review_pairs(tmp_path / "degrade")


def test_config_refuses_an_out_inside_the_input(stage):
    with pytest.raises(ValueError, match="choose a folder of its own"):
        ReviewConfig(input=str(stage[1]), out=str(stage[1] / "review"))


def test_export_only_needs_decisions_and_its_own_input(stage, tmp_path):
    root, filter_dir, _ = stage
    config = ReviewConfig(input=str(filter_dir), out=str(tmp_path / "review"))
    with pytest.raises(FileNotFoundError, match="no review decisions here yet"):
        export(config)
    ReviewStore(config.db_path).record("p1", "ann", YES)
    export(config)
    other = make_filter_stage(tmp_path / "other")
    with pytest.raises(FileExistsError, match="choose another --out"):
        export(ReviewConfig(input=str(other), out=str(tmp_path / "review")))


def test_cli_flags_build_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["runs/filter", "--out", "runs/review", "--port", "9000", "--export-only"])
    assert (args.input, args.out, args.host, args.port, args.export_only) == (
        "runs/filter",
        "runs/review",
        "127.0.0.1",
        9000,
        True,
    )


# ---------------------------------------------------------------------------------------------- HTTP


def test_server_exports_its_folder_at_start(server):
    info = json.loads((server.out / "stage.json").read_text())
    assert info["stage"] == "review"
    assert info["input"]["manifest"] == str(server.filter_dir / "manifest.jsonl")
    assert (server.out / "review.sqlite").is_file()
    assert get_json(server, "/api/info")["total"] == len(UNDER_REVIEW)


def test_only_the_manifest_files_are_served(server, stage):
    record = {r["id"]: r for r in read_records(stage[1])}
    status, body = raw_get(server, "/image/p1/original")
    assert status == 200 and body == Path(record["p1"]["image"]).read_bytes()
    for path in ("/image/sub%2Fp8/degraded", "/image/sub/p8/degraded"):  # an id holding a slash
        assert raw_get(server, path) == (200, Path(record["sub/p8"]["degraded"]).read_bytes())
    refused = [
        "/image/ok1/original",  # in the manifest, but the filter passed it: not under review
        "/image/nope/original",
        "/image/p1/manifest",
        "/image/p1/../../../../etc/passwd",
        "/image/../../etc/passwd",
        "/image/..%2F..%2F..%2Fetc%2Fpasswd/original",
        "/image/%2Fetc%2Fpasswd/original",
        "/static/../pyproject.toml",
        "/static/..%2Fapp.py",
        "/static/app.py",
        "/static/%2Fetc%2Fpasswd",
        "/etc/passwd",
        "/review.sqlite",
    ]
    for path in refused:
        status, body = raw_get(server, path)
        assert status in (403, 404), (path, status)
        assert b"root:" not in body and b"SQLite" not in body
    # a page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own Host header
    assert raw_get(server, "/image/p1/original", {"Host": f"evil.example:{server.port}"})[0] == 400
    assert raw_get(server, "/image/p1/original", {"Host": f"localhost:{server.port}"})[0] == 200


def test_api_validates_decisions(server):
    assert vote(server, "ok1", "val", YES) == 404  # not under review
    assert vote(server, "p1", "val", "maybe") == 400
    assert vote(server, "p1", " ", YES) == 400
    progress = {"reviewed": 0, "total": len(UNDER_REVIEW)}
    assert post_json(server, "/api/undo", {"reviewer": "val"}) == (
        200,
        {"undone": None, "progress": progress},
    )
    assert my_decisions(server, "val") == {}


def test_disagreeing_reviewers_are_combined(server):
    assert vote(server, "p6", "dave", YES) == vote(server, "p6", "erin", NO) == 200
    assert get_json(server, "/api/combined")["p6"] == {"decision": None, "votes": {"dave": YES, "erin": NO}}
    assert vote(server, "p6", "fay", YES) == 200
    combined = get_json(server, "/api/combined")
    assert combined["p6"] == {"decision": YES, "votes": {"dave": YES, "erin": NO, "fay": YES}}
    assert set(combined) == set(UNDER_REVIEW)


# ---------------------------------------------------------------------------------------------- browser


def test_page_keyboard_review_undo_and_resume(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    field = wait_for(
        browser,
        lambda d: (
            d.find_element(By.ID, "reviewer-input").is_displayed() and d.find_element(By.ID, "reviewer-input")
        ),
        "the name field",
    )
    field.send_keys("alice", Keys.ENTER)
    wait_for_pair(browser, "p1", "0 of 8 reviewed")
    assert shown_decision(browser) == ""

    press(browser, "y")  # yes, a visible difference
    wait_for_pair(browser, "p2", "1 of 8 reviewed")
    press(browser, "n")
    wait_for_pair(browser, "p3", "2 of 8 reviewed")
    press(browser, "1")
    wait_for_pair(browser, "p4", "3 of 8 reviewed")
    press(browser, "u")  # undo goes back to p3, unjudged again
    wait_for_pair(browser, "p3", "2 of 8 reviewed")
    assert shown_decision(browser) == ""
    assert my_decisions(server, "alice") == {"p1": YES, "p2": NO}

    browser.refresh()  # the name comes from localStorage; the page resumes at the first unjudged pair
    wait_for_pair(browser, "p3", "2 of 8 reviewed")
    assert text_of(browser, "reviewer-name") == "alice"
    assert browser.execute_script("return document.getElementById('progress').value") == 2
    press(browser, Keys.ARROW_LEFT)
    wait_for_pair(browser, "p2", "2 of 8 reviewed")
    assert shown_decision(browser) == NO and text_of(browser, "current-decision") == "no, they look the same"
    press(browser, Keys.ARROW_LEFT)
    wait_for_pair(browser, "p1", "2 of 8 reviewed")
    assert shown_decision(browser) == YES


def test_page_zoom_and_pan_move_both_images(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/?reviewer=zed")
    wait_for_pair(browser, "p1", "0 of 8 reviewed")
    fitted = transforms(browser)
    assert fitted[0] == fitted[1] and fitted[0].startswith("translate(")

    press(browser, "+", "+")
    wait_for(browser, lambda d: text_of(d, "zoom-level") != "fit", "a keyboard zoom")
    zoomed = transforms(browser)
    assert zoomed[0] == zoomed[1] != fitted[0]

    right = browser.find_element(By.ID, "viewport-degraded")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(right, 40, 20), 0, -200).perform()
    wait_for(browser, lambda d: transforms(d)[0] != zoomed[0], "a wheel zoom")
    wheeled = transforms(browser)
    assert wheeled[0] == wheeled[1]

    ActionChains(browser).click_and_hold(right).move_by_offset(30, 20).release().perform()
    wait_for(browser, lambda d: transforms(d)[0] != wheeled[0], "a drag")
    panned = transforms(browser)
    assert panned[0] == panned[1] != wheeled[0]

    press(browser, "0")
    wait_for(browser, lambda d: transforms(d) == fitted, "the fitted view again")
    assert my_decisions(server, "zed") == {}  # looking is not judging


def test_decisions_survive_a_killed_server(server, request):
    for pair_id, decision in (("p1", YES), ("p2", YES), ("p2", NO)):
        assert vote(server, pair_id, "carol", decision) == 200
    server.stop(signal.SIGKILL)  # no shutdown hook runs
    server.start()
    assert my_decisions(server, "carol") == {"p1": YES, "p2": NO}

    # the undo history survived too: carol's undo puts p2 back to her first answer
    if CHROMIUM and CHROMEDRIVER:  # through the page, which also shows where she left off
        browser = request.getfixturevalue("browser")
        browser.get(server.url + "/?reviewer=carol")
        wait_for_pair(browser, "p3", "2 of 8 reviewed")
        press(browser, "u")
        wait_for_pair(browser, "p2", "2 of 8 reviewed")
        assert shown_decision(browser) == YES
    else:  # the browser tests report the skip
        assert post_json(server, "/api/undo", {"reviewer": "carol"})[1]["undone"] == {
            "pair_id": "p2",
            "decision": YES,
        }
    assert my_decisions(server, "carol") == {"p1": YES, "p2": YES}


def test_export_writes_the_review_manifest_and_leaves_the_input_alone(server, stage):
    root, filter_dir, before = stage
    assert vote(server, "sub/p8", "gus", YES) == 200
    combined = get_json(server, "/api/combined")
    server.stop()  # SIGTERM: the server exports on its way out
    on_shutdown = (server.out / "manifest.jsonl").read_bytes()
    export(ReviewConfig(input=str(filter_dir), out=str(server.out)))
    assert (server.out / "manifest.jsonl").read_bytes() == on_shutdown

    inputs = {r["id"]: r for r in read_records(filter_dir)}
    records = read_records(server.out)
    assert [r["id"] for r in records] == [pair_id for pair_id, _ in PAIRS]
    for record in records:
        review = record.pop("review", None)
        assert record == inputs[record["id"]]  # every input field kept as it was
        assert review == (combined[record["id"]] if record["id"] in UNDER_REVIEW else None)
    by_id = {r["id"]: r for r in read_records(server.out)}
    assert by_id["sub/p8"]["review"] == {"decision": YES, "votes": {"gus": YES}}
    assert by_id["p6"]["review"]["decision"] == YES
    assert by_id["p7"]["review"] == {"decision": None, "votes": {}}
    info = json.loads((server.out / "stage.json").read_text())
    assert info["stage"] == "review"
    assert info["summary"]["under_review"] == len(UNDER_REVIEW)
    assert tree_digest(root / "degrade", filter_dir) == before
