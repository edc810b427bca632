"""A lab technician's session in a real browser against the running service: sign in,
submit real slides, watch the batch finish, read the counts, retry a failed slide, open a
slide, select a cell, see its probabilities, download the CSV report, sign out."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.request

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.data]

CLASSES = ("RBC", "WBC", "Platelets")
FINISH_TIMEOUT_MS = 180_000  # two slides on a shared 2-CPU machine, model load included


@pytest.fixture()
def slides(data_dir, tmp_path):
    """Two real BCCD smears, one JPEG with corrupt pixels behind a valid header (the API
    accepts it without decoding; it fails in the worker) and a text file (refused by the
    page before upload). A truncated JPEG would not do: the API refuses it at upload."""
    real = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(real[0].read_bytes()[:200] + bytes(range(256)) * 8 + b"\xff\xd9")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a slide")
    return real, broken, notes


def _watch(page, requests: list[str], problems: list[str]) -> None:
    def console(message) -> None:
        # Chromium logs every 4xx answer; the refused key on the sign-in page is expected.
        if message.type == "error" and "status of 401" not in message.text:
            problems.append(f"console {message.type}: {message.text}")

    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", console)


def _wait_finished(page, service) -> None:
    """Wait for the batch page to show the batch finished; on timeout, say what the
    service logged (a worker that cannot load its model, say)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator("#batch-status").filter(has_text="done with errors").wait_for(
            timeout=FINISH_TIMEOUT_MS
        )
    except PlaywrightTimeout:
        shown = page.locator("#progress-text").inner_text()
        pytest.fail(
            f"the batch did not finish in {FINISH_TIMEOUT_MS // 1000}s (page: {shown!r}); "
            f"service log tail:\n{service.log_text()[-4000:]}"
        )


def _submit(service, key: str, name: str, data: bytes, reference: str | None = None):
    """Submit one file as a batch over HTTP, as a lab's script would: (batch id, slide id)."""
    import requests

    response = requests.post(
        f"{service.base_url}/api/v1/batches",
        headers={"Authorization": f"Bearer {key}"},
        files={"files": (name, data)},
        data={"reference": reference} if reference else None,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"], response.json()["slide_ids"][0]


def _signed_in_on_finished_batch(service, browser_context, key: str, batch_id: str):
    """A new page signed in with ``key``, on the batch's page once it shows "done"; and the
    list its console and script errors are collected in."""
    page = browser_context.new_page()
    problems: list[str] = []
    _watch(page, [], problems)
    page.goto(service.base_url + "/signin")
    page.get_by_label("Lab API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/batches$"))
    page.goto(f"{service.base_url}/batches/{batch_id}")
    page.locator("#batch-status").filter(has_text="done").wait_for(timeout=FINISH_TIMEOUT_MS)
    return page, problems


def _numbers(page, selector: str) -> list[int]:
    return [int(t) for t in page.locator(selector).all_inner_texts()]


def test_technician_journey(web_service, browser_context, slides, screenshot):
    service = web_service
    real, broken, notes = slides
    page = browser_context.new_page()
    requests: list[str] = []
    problems: list[str] = []
    _watch(page, requests, problems)
    base = service.base_url

    # Signed out: any page sends us to sign in; a wrong key is refused with a message.
    page.goto(base + "/batches")
    page.wait_for_url(re.compile(r"/signin$"))
    page.get_by_label("Lab API key").fill("bc_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#api-key-error")
    error.wait_for(state="visible")
    assert "not accepted" in error.inner_text()
    screenshot(page, "signin")

    page.get_by_label("Lab API key").fill(service.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/batches$"))
    page.get_by_text("No batches yet").wait_for()

    # Submit: the text file is refused on the page; the three images go up.
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Submit").click()
    page.get_by_label("Client reference").fill("E2E-001")
    page.locator("#files").set_input_files([*map(str, real), str(broken), str(notes)])
    assert page.locator("#selected-list li").count() == 3
    rejected = page.locator("#rejected-list li")
    assert rejected.count() == 1 and "notes.txt" in rejected.inner_text()
    assert "only JPEG, PNG, TIFF, BMP and zip" in rejected.inner_text()
    screenshot(page, "submit")
    # Throttle the upload so the progress bar has time to move, and watch it move.
    cdp = browser_context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 16_000},
    )
    page.get_by_role("button", name=re.compile(r"^Submit 3 files")).click()
    page.wait_for_function(
        "() => { const v = document.getElementById('upload-bar').value; return v > 0 && v < 100; }"
    )
    assert re.search(
        r"^[\d.]+ kB of [\d.]+ kB \(\d\d?%\)$", page.locator("#upload-text").inner_text()
    )
    page.wait_for_url(re.compile(r"/batches/[\w-]+$"))
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    assert "3 slides queued" in page.locator("#messages").inner_text()
    assert page.locator("#batch-reference").inner_text() == "E2E-001"

    # Watch it finish: the page polls; two slides are counted and the broken one fails.
    _wait_finished(page, service)
    page.locator("#slides-body tr").nth(2).wait_for()
    assert page.locator("#progress-text").inner_text().startswith("3 of 3 slides finished")
    rows = page.locator("#slides-body tr")
    table = {}
    for i in range(rows.count()):
        cells = rows.nth(i).locator("td").all_inner_texts()
        table[cells[0]] = cells
    assert table[real[0].name][1] == "done" and table[real[1].name][1] == "done"
    assert table["broken.jpg"][1] == "failed" and table["broken.jpg"][5]
    for image in real:
        assert int(table[image.name][2]) > 0, "every real smear has red cells"
    totals = _numbers(page, "#totals dd")
    for k, _name in enumerate(CLASSES):
        assert totals[k] == sum(int(table[i.name][2 + k]) for i in real)
    assert page.locator("#counts-chart svg rect").count() == 2 * len(CLASSES)
    failed = page.locator("#failed")
    assert failed.is_visible() and "broken.jpg" in failed.inner_text()
    screenshot(page, "batch")

    # Retry the failed slide: it is queued again and, still truncated, fails again.
    page.get_by_role("button", name="Retry failed slides").click()
    page.locator("#messages").filter(has_text="1 failed slide is queued again").wait_for()
    _wait_finished(page, service)

    # The CSV report, fetched with the key and saved under the server's file name.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    report = download_info.value
    assert report.suggested_filename.endswith(".csv")
    report_rows = list(csv.DictReader(io.StringIO(open(report.path()).read())))
    assert len(report_rows) == 3
    by_file = {r["file"]: r for r in report_rows}
    for image in real:
        for k, name in enumerate(CLASSES):
            assert int(by_file[image.name][name]) == int(table[image.name][2 + k])
    assert by_file["broken.jpg"]["status"] == "failed" and by_file["broken.jpg"]["error"]
    # The batch's counting-frame totals: the report's per-slide frame counts, summed.
    frame_totals = _numbers(page, "#frame-totals dd")
    for k, name in enumerate(CLASSES):
        assert frame_totals[k] == sum(int(by_file[i.name][f"frame_{name}"]) for i in real)
        assert frame_totals[k] <= totals[k]

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download JSON").click()
    document = json.loads(open(download_info.value.path()).read())
    assert {s["file"] for s in document["slides"]} == {real[0].name, real[1].name, "broken.jpg"}

    # The batches list shows it, newest first, with its totals.
    nav.get_by_role("link", name="Batches").click()
    first = page.locator("#batches-body tr").first
    first.get_by_role("link", name="E2E-001").wait_for()
    assert "done with errors" in first.inner_text()
    assert _numbers(page, "#batches-body tr:first-child td.num") == totals
    screenshot(page, "batches")

    # A slide: every cell drawn; class toggles; a selected cell shows crop and chart.
    first.get_by_role("link", name="E2E-001").click()
    page.get_by_role("link", name=real[0].name).click()
    page.wait_for_url(re.compile(r"/slides/[\w-]+$"))
    page.get_by_role("link", name="Batch E2E-001").wait_for()
    page.locator("#figure svg image").wait_for()
    counts = dict(zip(CLASSES, _numbers(page, "#slide-counts dd")[:3], strict=True))
    assert page.locator("rect.cell-box").count() == sum(counts.values())
    # The counting frame's counts, as the API reports them, never above the visible counts.
    framed = dict(zip(CLASSES, _numbers(page, "#slide-frame-counts dd"), strict=True))
    slide_id = page.url.rsplit("/", 1)[1]
    request = urllib.request.Request(
        f"{service.base_url}/api/v1/slides/{slide_id}",
        headers={"Authorization": f"Bearer {service.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        api_slide = json.load(response)
    assert framed == api_slide["frame_counts"]
    assert all(framed[c] <= counts[c] for c in CLASSES)
    assert counts["RBC"] == int(table[real[0].name][2])
    for name in CLASSES:
        assert page.locator(f"g.class-{name} rect.cell-box").count() == counts[name]
    total = sum(counts.values())
    page.get_by_label("RBC", exact=True).uncheck()
    assert page.locator("rect.cell-box:visible").count() == total - counts["RBC"]
    page.get_by_label("RBC", exact=True).check()
    assert page.locator("rect.cell-box:visible").count() == total

    cell = page.locator("g.class-RBC rect.cell-box").first
    cell.focus()
    page.keyboard.press("Enter")  # keyboard selection works as a click does
    assert cell.get_attribute("aria-pressed") == "true"
    bars = page.locator("#cell-chart svg rect")
    assert bars.count() == len(CLASSES)
    label = page.locator("#cell-chart svg").get_attribute("aria-label")
    probabilities = [float(p) for p in re.findall(r"([\d.]+)%", label)]
    assert len(probabilities) == 3 and abs(sum(probabilities) - 100) < 1.0
    assert page.locator("#cell-facts").inner_text().startswith("Class\nRBC")
    smallest = page.locator("rect.cell-box").last  # drawn last, so on top: clickable
    smallest.click()
    assert smallest.get_attribute("aria-pressed") == "true"
    assert cell.get_attribute("aria-pressed") == "false"
    assert page.locator("#slide-model dd").first.inner_text() not in ("", "–")
    screenshot(page, "slide")

    # Sign out: the key is gone from the tab, and the pages ask for it again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/signin$"))
    assert page.evaluate("sessionStorage.length") == 0
    page.goto(base + "/batches")
    page.wait_for_url(re.compile(r"/signin$"))

    # The key never travelled in a URL nor reached the service's logs; no script errors
    # (a Content-Security-Policy violation would show up as one).
    assert not [u for u in requests if service.api_key in u]
    assert service.api_key not in service.log_text()
    assert problems == []


def test_a_slide_counted_with_warnings_says_so(web_service, browser_context, screenshot):
    """A blank field is counted (no cells) with a warning: the batch page's note and the
    slide page's warning box show the API's message."""
    import cv2
    import numpy as np
    import requests

    key = web_service.new_lab("E2E warnings lab")
    blank = cv2.imencode(".png", np.full((480, 640, 3), 235, np.uint8))[1].tobytes()
    batch_id, slide_id = _submit(web_service, key, "blank.png", blank)

    page, problems = _signed_in_on_finished_batch(web_service, browser_context, key, batch_id)
    page.locator("#slides-body tr td a").wait_for()
    api_slide = requests.get(
        f"{web_service.base_url}/api/v1/slides/{slide_id}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ).json()
    assert [w["code"] for w in api_slide["warnings"]] == ["no_red_cells"]
    message = api_slide["warnings"][0]["message"]
    note = page.locator("#slides-body tr").first.locator("td").nth(5)
    assert note.inner_text() == message
    assert page.locator("#progress-text").inner_text() == (
        "1 of 1 slides finished; 1 counted with warnings: see their notes"
    )

    page.get_by_role("link", name="blank.png").click()
    page.wait_for_url(re.compile(r"/slides/[\w-]+$"))
    box = page.locator("#slide-warnings")
    box.wait_for(state="visible")
    assert page.locator("#slide-warnings-list li").all_inner_texts() == [message]
    assert _numbers(page, "#slide-counts dd")[:3] == [0, 0, 0]
    screenshot(page, "slide-warnings")
    assert problems == []


def test_a_tiff_slide_is_shown_with_its_boxes(
    web_service, browser_context, data_dir, tmp_path, screenshot
):
    """Browsers cannot show a TIFF: the slide page shows the worker's JPEG of the slide as
    analysed instead, at the size the cells' boxes refer to."""
    from PIL import Image

    smear = sorted((data_dir / "bccd" / "JPEGImages").glob("*.jpg"))[2]
    tiff = tmp_path / "smear.tif"
    Image.open(smear).save(tiff, "TIFF", compression="tiff_lzw")
    key = web_service.new_lab("E2E TIFF lab")
    batch_id, slide_id = _submit(web_service, key, "smear.tif", tiff.read_bytes())

    page, problems = _signed_in_on_finished_batch(web_service, browser_context, key, batch_id)
    page.goto(f"{web_service.base_url}/slides/{slide_id}")
    page.locator("#figure svg image").wait_for()
    counts = _numbers(page, "#slide-counts dd")[:3]
    assert sum(counts) > 0 and page.locator("rect.cell-box").count() == sum(counts)
    # The picture under the boxes decoded in the browser, at the slide's analysed size.
    size = page.evaluate(
        """async () => {
            const img = new Image();
            img.src = document.querySelector('#figure svg image').getAttribute('href');
            await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }"""
    )
    assert size == list(Image.open(smear).size)
    assert page.locator("#figure .message.error").count() == 0
    screenshot(page, "slide-tiff")
    assert problems == []


def test_a_batch_deleted_from_its_page_is_gone_with_its_images(
    web_service, browser_context, screenshot
):
    import cv2
    import numpy as np
    import requests

    key = web_service.new_lab("E2E delete lab")
    blank = cv2.imencode(".png", np.full((120, 160, 3), 235, np.uint8))[1].tobytes()
    batch_id, slide_id = _submit(web_service, key, "blank.png", blank, reference="TO-DELETE")
    page, problems = _signed_in_on_finished_batch(web_service, browser_context, key, batch_id)

    questions: list[str] = []
    # The first time the person thinks again (dismisses the question): nothing is deleted.
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete batch…").click()
    page.wait_for_timeout(300)
    assert questions and "TO-DELETE" in questions[0] and "1 slide," in questions[0]
    api = f"{web_service.base_url}/api/v1"
    headers = {"Authorization": f"Bearer {key}"}
    assert requests.get(f"{api}/batches/{batch_id}", headers=headers, timeout=10).ok

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete batch…").click()
    page.get_by_role("heading", name="Batch TO-DELETE deleted").wait_for()
    message = page.locator("#messages .message").inner_text()
    assert message.startswith("1 slide and ") and "images deleted." in message
    screenshot(page, "batch-deleted")
    for path in (f"batches/{batch_id}", f"slides/{slide_id}", f"slides/{slide_id}/image"):
        assert requests.get(f"{api}/{path}", headers=headers, timeout=10).status_code == 404
    page.get_by_role("link", name="Back to the batches").click()
    page.wait_for_url(re.compile(r"/batches$"))
    page.locator("#batches-body").wait_for()
    page.wait_for_timeout(500)
    assert "TO-DELETE" not in page.locator("#batches-body").inner_text()
    assert problems == []
