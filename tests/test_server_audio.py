"""Sounds and videos over HTTP, against a real uvicorn server on loopback: /embed/audio and its
bad inputs, search by sound, the type filter, byte ranges on served files, thumbnails, and the
page in a real headless Chromium playing an audio hit. Real recordings (Debian packages); the
fake encoder hears (16 band energies), `lite` does not."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from live_server import live_server
from test_web_page import ARTIFACTS, CHROMEDRIVER, wait
from xmodal.audio import load_audio
from xmodal.engine.collection import Collection
from xmodal.engine.zeroshot import SOUND_TEMPLATES, ZeroShotClassifier
from xmodal.models.fake import FakeEncoder
from xmodal.server import ServerSettings, create_app

ASTERISK = Path("/usr/share/asterisk/sounds/en")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
SOUND_ICONS = Path("/usr/share/sounds/sound-icons")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ASTERISK.is_dir() and FREEDESKTOP.is_dir()),
        reason="needs Debian package asterisk-core-sounds-en-wav and sound-theme-freedesktop",
    ),
]

BELL = FREEDESKTOP / "bell.oga"
GOODBYE = ASTERISK / "vm-goodbye.wav"
THANKS = ASTERISK / "queue-thankyou.wav"
LONG = ASTERISK / "demo-congrats.wav"  # ~30 s, ~480 KB


def write_video(path: Path) -> None:
    """A 4 s WebM (VP8 + Opus, which Chromium plays): 2 s of a red frame with a 440 Hz tone,
    then 2 s of a blue one with a 1320 Hz tone; a hard cut between them."""
    import av

    fps, rate = 10, 48_000
    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("libopus", rate=rate)
        audio.layout = "mono"
        for i, (colour, tone) in enumerate([((220, 30, 30), 440.0), ((30, 30, 220), 1320.0)]):
            picture = Image.new("RGB", (160, 120), colour)
            for n in range(2 * fps):
                frame = av.VideoFrame.from_image(picture)
                frame.pts = i * 2 * fps + n
                container.mux(video.encode(frame))
            t = np.arange(2 * rate) / rate
            samples = (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
            for start in range(0, len(samples), 960):
                chunk = av.AudioFrame.from_ndarray(
                    samples[None, start : start + 960], format="flt", layout="mono"
                )
                chunk.sample_rate = rate
                chunk.pts = i * 2 * rate + start
                container.mux(audio.encode(chunk))
        container.mux(video.encode())
        container.mux(audio.encode())


def _video_indexing() -> bool:
    try:
        import xmodal.video  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def fake():
    return FakeEncoder(dim=32)


@pytest.fixture(scope="module")
def media(tmp_path_factory, photo_by_name, fake):
    """A collection (fake encoder) of two photos, three sounds and, where video indexing is
    available, a two-shot video."""
    base = tmp_path_factory.mktemp("media")
    root = base / "media"
    root.mkdir()
    for name in ("chelsea", "rocket"):
        shutil.copy(photo_by_name[name].path, root / f"{name}.png")
    shutil.copy(BELL, root / "bell.oga")
    shutil.copy(GOODBYE, root / "goodbye.wav")
    shutil.copy(THANKS, root / "thanks.wav")
    if _video_indexing():
        write_video(root / "shots.webm")
    with Collection.open(base / "db", fake) as collection:
        report = collection.index([root])
        assert not report.skipped, report.skipped
    return base


@pytest.fixture(scope="module")
def server(media, fake):
    app = create_app(ServerSettings(db=media / "db"), encoder=fake)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def ids(server) -> dict[str, int]:
    hits = server.get("/search", params={"q": "anything", "k": 100, "mode": "vector"})
    assert hits.status_code == 200, hits.text
    return {h["path"]: h["id"] for h in hits.json()["results"] if h["type"] != "video"}


def sound(path: Path, name: str | None = None, content_type="audio/wav", field="file"):
    return (field, (name or path.name, path.read_bytes(), content_type))


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(out, "PNG")
    return out.getvalue()


# -- /embed/audio ----------------------------------------------------------------------------


def test_embed_audio_matches_the_library(server, fake):
    r = server.post("/embed/audio", files=[sound(GOODBYE), sound(BELL, content_type="audio/ogg")])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["dim"]) == (fake.name, fake.dim)
    got = np.array(body["embeddings"], dtype=np.float32)
    np.testing.assert_allclose(got, fake.embed_audio([str(GOODBYE), str(BELL)]), atol=1e-5)
    assert np.linalg.norm(got, axis=1) == pytest.approx([1, 1], abs=1e-5)
    durations = [load_audio(str(p)).duration for p in (GOODBYE, BELL)]
    assert body["seconds"] == pytest.approx(durations, abs=0.01)
    assert body["truncated"] == [False, False]
    assert body["transcripts"] is None  # the fake model does not transcribe


def encode(path: Path, out: Path) -> Path:
    """The recording at `path` re-encoded into the container `out`'s suffix names."""
    import soundfile

    samples, rate = soundfile.read(str(path), dtype="float32")
    writers = {
        ".flac": ("FLAC", "PCM_16"),
        ".aiff": ("AIFF", "PCM_16"),
        ".ogg": ("OGG", "VORBIS"),
        ".mp3": ("MP3", "MPEG_LAYER_III"),
    }
    if out.suffix in writers:
        fmt, subtype = writers[out.suffix]
        soundfile.write(str(out), samples, rate, format=fmt, subtype=subtype)
        return out
    import av  # M4A (AAC) and WebM (Opus): FFmpeg's encoders

    codec, rate_out = {".m4a": ("aac", rate), ".webm": ("libopus", 48_000)}[out.suffix]
    if rate_out != rate:
        samples, rate = load_audio((samples, rate), rate=rate_out).samples, rate_out
    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for chunk in (frame, None):
            container.mux(stream.encode(chunk))
    return out


@pytest.mark.parametrize("suffix", [".flac", ".aiff", ".ogg", ".mp3", ".m4a", ".webm"])
def test_every_container_is_recognised_and_heard(server, fake, tmp_path, suffix):
    """The same recording in each container gives (nearly, for lossy codecs) its WAV vector."""
    path = encode(THANKS, tmp_path / f"thanks{suffix}")
    r = server.post("/embed/audio", files=[sound(path, content_type="audio/whatever")])
    assert r.status_code == 200, r.text
    got = np.array(r.json()["embeddings"][0])
    wav = fake.embed_audio([str(THANKS)])[0]
    lossless = suffix in (".flac", ".aiff")
    # (Two different recordings score about 0.98 with the fake model's band energies.)
    assert got @ wav > (0.99999 if lossless else 0.999), got @ wav
    assert r.json()["seconds"][0] == pytest.approx(load_audio(str(THANKS)).duration, abs=0.1)


def test_the_bytes_decide_not_the_declared_type(server, fake):
    """A recording declared as something else (browsers differ) is still heard as sound."""
    r = server.post("/embed/audio", files=[sound(BELL, "x.bin", "application/octet-stream")])
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["embeddings"], fake.embed_audio([str(BELL)]), atol=1e-5)


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("photo.wav", png(), "is a PNG image, not a sound"),
        ("noise.mp3", b"\x00" + np.random.default_rng(0).bytes(4095), "does not start like"),
        ("empty.wav", b"", "empty file"),
        ("page.ogg", b"<!DOCTYPE html><html><body>hi</body></html>", "HTML or XML document"),
        ("broken.wav", b"RIFF\x10\x00\x00\x00WAVEfmt nothing here", "broken.wav: "),
        ("cut.wav", GOODBYE.read_bytes()[:30], "cut.wav: "),
    ],
)
def test_bad_sound_uploads_get_400_with_the_reason(server, name, data, reason):
    r = server.post("/embed/audio", files=[("file", (name, data, "audio/wav"))])
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert name in detail and reason in detail, detail


def test_too_many_files(server):
    r = server.post("/embed/audio", files=[sound(GOODBYE)] * 33)
    assert r.status_code == 422
    assert "at most 32" in r.json()["detail"]


@pytest.fixture(scope="module")
def limited(media, fake, tmp_path_factory):
    """A server that cuts sound at 1 s and takes request bodies up to 300 KB."""
    base = tmp_path_factory.mktemp("limited")
    (base / "one").mkdir()
    shutil.copy(THANKS, base / "one" / "thanks.wav")
    with Collection.open(base / "db", fake) as collection:
        collection.index([base / "one"])
    settings = ServerSettings(db=base / "db", max_upload_bytes=300_000, max_audio_seconds=1.0)
    app = create_app(settings, encoder=fake)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_a_long_sound_is_cut_at_the_limit(limited, fake):
    r = limited.post("/embed/audio", files=[sound(THANKS)])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["truncated"] == [True] and body["seconds"] == [1.0]
    first_second = load_audio(str(THANKS), rate=fake.audio_rate, max_seconds=1, truncate=True)
    expected = fake.embed_audio([first_second])
    np.testing.assert_allclose(body["embeddings"], expected, atol=1e-5)
    whole = fake.embed_audio([str(THANKS)])
    assert not np.allclose(body["embeddings"], whole, atol=1e-3)  # the cut was heard


def test_an_upload_over_the_size_limit_gets_413(limited):
    assert LONG.stat().st_size > 300_000
    r = limited.post("/embed/audio", files=[sound(LONG)])
    assert r.status_code == 413, r.text
    r = limited.post("/search", files=[sound(LONG, field="audio")])
    assert r.status_code == 413, r.text


@pytest.fixture(scope="module")
def deaf(tmp_path_factory, photo_by_name):
    """A (tiny, random) CLIP: texts and images, no ears."""
    from checkpoints import save_hf_clip
    from xmodal.models import load_model

    base = tmp_path_factory.mktemp("deaf")
    clip = load_model(f"hf:{save_hf_clip(base / 'clip')}")
    (base / "photos").mkdir()
    shutil.copy(photo_by_name["chelsea"].path, base / "photos" / "chelsea.png")
    with Collection.open(base / "db", clip) as collection:
        collection.index([base / "photos"])
    app = create_app(ServerSettings(db=base / "db"), encoder=clip)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.mark.parametrize(
    "endpoint, fields",
    [
        ("/embed/audio", {}),
        ("/search", {"text": "a bell"}),
        ("/classify", {"labels": "bell, voice"}),
        ("/similarity", {"text": "a bell"}),
    ],
)
def test_a_model_that_does_not_hear_refuses_sound_by_name(deaf, endpoint, fields):
    name = deaf.get("/healthz").json()["model"]
    r = deaf.post(endpoint, data=fields, files=[sound(BELL, content_type="audio/ogg")])
    assert r.status_code == 400, r.text
    assert f"model {name} does not hear" in r.json()["detail"]


def test_the_deaf_model_still_takes_images_in_the_same_field(deaf, photo_by_name):
    photo = photo_by_name["chelsea"].path
    r = deaf.post("/search", files=[("file", ("c.png", photo.read_bytes(), "image/png"))])
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"] == "chelsea.png"


@pytest.fixture(scope="module")
def spoken(tmp_path_factory, photo_by_name, lite):
    """`lite`, which hears and transcribes, over two voice prompts, a bell and a photo."""
    if "audio" not in lite.modalities:
        pytest.skip("this lite model was built without its hearing part")
    base = tmp_path_factory.mktemp("spoken")
    root = base / "media"
    root.mkdir()
    for path in (GOODBYE, THANKS, BELL):
        shutil.copy(path, root / path.name)
    shutil.copy(photo_by_name["chelsea"].path, root / "chelsea.png")
    with Collection.open(base / "db", lite) as collection:
        collection.index([root])
    app = create_app(ServerSettings(db=base / "db"), encoder=lite)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client


def test_transcripts_come_back_from_a_model_that_transcribes(spoken):
    r = spoken.post("/embed/audio", files=[sound(GOODBYE), sound(THANKS)])
    assert r.status_code == 200, r.text
    goodbye, thanks = (t.lower() for t in r.json()["transcripts"])
    assert "goodbye" in goodbye and "patience" in thanks


def test_search_hits_carry_what_a_sound_says(spoken):
    r = spoken.get("/search", params={"q": "thank you for your patience", "k": 4})
    assert r.status_code == 200, r.text
    first = r.json()["results"][0]
    assert (first["path"], first["type"]) == ("queue-thankyou.wav", "audio")
    assert "patience" in first["transcript"].lower()
    bell = spoken.get("/search", params={"q": "a bell", "k": 4, "type": "audio"}).json()
    by_name = {h["path"]: h for h in bell["results"]}
    assert by_name["bell.oga"]["transcript"] is None  # a bell says nothing


# -- search ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["audio", "file"])
def test_search_by_sound_finds_the_same_recording_first(server, field):
    r = server.post("/search", data={"k": "3"}, files=[sound(BELL, "q.oga", field=field)])
    assert r.status_code == 200, r.text
    body = r.json()
    first = body["results"][0]
    assert (first["path"], first["type"]) == ("bell.oga", "audio")
    assert first["score"] == pytest.approx(1.0, abs=1e-4)
    assert first["thumbnail"] is None and first["file"] == f"/items/{first['id']}/file"
    assert first["start"] is None and first["end"] is None
    assert body["query"] == "+audio:q.oga"


def test_sound_weights_and_negatives_mix_like_images(server, fake, media):
    """A sound at weight 2 minus a text: the fused query vector is the library's combination."""
    from xmodal.engine.query import combine

    r = server.post(
        "/search",
        data={"audio_weight": "2", "negative": "goodbye", "k": "10", "mode": "vector"},
        files=[sound(GOODBYE, field="audio")],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "-text:goodbye +2*audio:vm-goodbye.wav"
    vectors = np.stack([fake.embed_texts(["goodbye"])[0], fake.embed_audio([str(GOODBYE)])[0]])
    query = combine(vectors, [-1.0, 2.0])
    with Collection.open(media / "db", fake) as collection:
        expected = collection.search_vectors(query, 10)[0]
    assert [h["id"] for h in body["results"]] == [h.id for h in expected]
    assert [h["score"] for h in body["results"]] == pytest.approx([h.score for h in expected])


@pytest.mark.parametrize("kind", ["audio", "image"])
def test_type_filter_on_get_and_post(server, kind):
    got = server.get("/search", params={"q": "a bell", "k": 50, "type": kind})
    assert got.status_code == 200, got.text
    posted = server.post(
        "/search", data={"type": kind, "k": "50"}, files=[sound(BELL, field="audio")]
    )
    assert posted.status_code == 200, posted.text
    for body in (got.json(), posted.json()):
        types = {h["type"] for h in body["results"]}
        assert types == {kind}
        suffixes = {Path(h["path"]).suffix for h in body["results"]}
        assert suffixes == ({".oga", ".wav"} if kind == "audio" else {".png"})


def test_an_unknown_type_is_refused(server):
    r = server.get("/search", params={"q": "x", "type": "smell"})
    assert r.status_code == 422


def test_classify_a_sound_with_sound_prompts(server, fake):
    labels = "bell, voice, engine"
    r = server.post(
        "/classify", data={"labels": labels}, files=[sound(BELL, content_type="audio/ogg")]
    )
    assert r.status_code == 200, r.text
    got = [(x["label"], x["probability"]) for x in r.json()["labels"]]
    classifier = ZeroShotClassifier(fake, labels, SOUND_TEMPLATES)
    expected = [(s.label, s.score) for s in classifier.rank(fake.embed_audio([str(BELL)]))[0]]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-5)
    # The image templates would have given other probabilities: the sound ones were used.
    image_prompts = ZeroShotClassifier(fake, labels)
    other = image_prompts.rank(fake.embed_audio([str(BELL)]))[0]
    assert [s.score for s in other] != pytest.approx([e[1] for e in expected], abs=1e-5)


# -- items: files, ranges, thumbnails -------------------------------------------------------


def test_a_sound_file_is_served_whole_with_its_media_type(server, ids, media):
    for name, media_type in [("bell.oga", "audio/ogg"), ("goodbye.wav", "audio/wav")]:
        r = server.get(f"/items/{ids[name]}/file")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media_type
        assert r.headers["accept-ranges"] == "bytes"
        assert "media-src 'self'" in r.headers["content-security-policy"]
        assert r.content == (media / "media" / name).read_bytes()


def test_byte_ranges(server, ids, media):
    data = (media / "media" / "bell.oga").read_bytes()
    url = f"/items/{ids['bell.oga']}/file"
    first = server.get(url, headers={"Range": "bytes=0-99"})
    assert first.status_code == 206
    assert first.content == data[:100]
    assert first.headers["content-range"] == f"bytes 0-99/{len(data)}"
    assert first.headers["content-type"] == "audio/ogg"
    suffix = server.get(url, headers={"Range": "bytes=-100"})
    assert suffix.status_code == 206 and suffix.content == data[-100:]
    middle = server.get(url, headers={"Range": "bytes=1000-"})
    assert middle.status_code == 206 and middle.content == data[1000:]
    past = server.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    # Malformed ranges are the client's error, not an unsatisfiable range.
    for malformed in ("bytes=500-100", "bytes=abc", "pages=0-10"):
        assert server.get(url, headers={"Range": malformed}).status_code == 400, malformed
    # A range past the end is cut at the end.
    tail = server.get(url, headers={"Range": f"bytes={len(data) - 10}-{len(data) + 1000}"})
    assert tail.status_code == 206 and tail.content == data[-10:]


def test_a_sound_has_no_thumbnail(server, ids):
    r = server.get(f"/items/{ids['bell.oga']}/thumbnail")
    assert r.status_code == 404
    assert "sound" in r.json()["detail"]
    item = server.get(f"/items/{ids['bell.oga']}").json()
    assert item["type"] == "audio" and item["thumbnail"] is None
    assert 0.1 < item["duration"] < 5


# -- video segments ---------------------------------------------------------------------------

needs_video = pytest.mark.skipif(not _video_indexing(), reason="xmodal.video is not importable")


@needs_video
def test_video_segments_come_with_their_time_range_and_frames(server, media):
    r = server.get("/search", params={"q": "anything", "k": 50, "type": "video"})
    assert r.status_code == 200, r.text
    segments = sorted(r.json()["results"], key=lambda h: h["start"])
    assert len(segments) >= 2 and {h["path"] for h in segments} == {"shots.webm"}
    assert segments[0]["start"] == pytest.approx(0, abs=0.01)
    assert segments[-1]["end"] == pytest.approx(4, abs=0.6)
    # Each segment's thumbnail is its own frame: the first red, the last blue.
    colours = []
    for hit in (segments[0], segments[-1]):
        thumb = server.get(hit["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        picture = Image.open(io.BytesIO(thumb.content)).convert("RGB")
        colours.append(np.asarray(picture).mean((0, 1)))
    assert colours[0][0] > colours[0][2] + 50 and colours[1][2] > colours[1][0] + 50
    # The file is the whole video, seekable.
    data = (media / "media" / "shots.webm").read_bytes()
    whole = server.get(segments[-1]["file"], headers={"Range": "bytes=0-15"})
    assert whole.status_code == 206 and whole.content == data[:16]
    assert whole.headers["content-type"] == "video/webm"


# -- the page ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, set up as test_web_page's (which see)."""
    if CHROMEDRIVER is None:
        pytest.fail("chromedriver not found: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"]:
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_page_plays_an_audio_hit(browser, server, ids):
    from selenium.webdriver.common.by import By

    browser.get(str(server.base_url))
    browser.find_element(By.ID, "file").send_keys(str(BELL))

    def first_sound(d):
        cards = d.find_elements(By.CSS_SELECTOR, "#results .hit")
        return cards[0] if cards and cards[0].get_attribute("data-path") == "bell.oga" else None

    card = wait(browser).until(first_sound)
    assert card.get_attribute("data-type") == "audio"
    player = card.find_element(By.TAG_NAME, "audio")
    assert player.get_attribute("preload") == "none"
    assert player.get_attribute("controls") is not None
    assert player.get_attribute("src").endswith(f"/items/{ids['bell.oga']}/file")
    # Load it as playing would: the page's CSP lets the media in and Chromium decodes it.
    browser.execute_script("arguments[0].preload = 'auto'; arguments[0].load();", player)
    state = "const a = arguments[0]; return a.error ? `error ${a.error.code}` : a.readyState;"
    wait(browser).until(lambda d: d.execute_script(state, player) not in (0, None))
    assert browser.execute_script(state, player) in (1, 2, 3, 4)  # not an error
    duration = browser.execute_script("return arguments[0].duration", player)
    assert 0.1 < duration < 5
    # The query's own preview plays from a blob: URL (the page's CSP lets that in too).
    preview = browser.find_element(By.ID, "query-audio")
    wait(browser).until(lambda d: d.execute_script(state, preview) not in (0, None))
    assert browser.execute_script(state, preview) in (1, 2, 3, 4)
    status = browser.execute_script(
        "return fetch(arguments[0], {headers: {Range: 'bytes=0-63'}}).then(r => r.status)",
        player.get_attribute("src"),
    )
    assert status == 206
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web-audio-query.png"))


@needs_video
def test_the_page_starts_a_video_hit_at_its_segment(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(str(server.base_url))
    hits = server.get("/search", params={"q": "x", "k": 50, "type": "video"}).json()["results"]
    last = max(hits, key=lambda h: h["start"])
    # What the "more like this" button of that segment does: the segment comes back first.
    browser.execute_script("search({like: arguments[0]});", last["id"])

    def video_card(d):
        for card in d.find_elements(By.CSS_SELECTOR, "#results .hit"):
            if card.get_attribute("data-id") == str(last["id"]):
                return card
        return None

    card = wait(browser).until(video_card)
    player = card.find_element(By.TAG_NAME, "video")
    src, fragment = player.get_attribute("src").split("#t=")
    assert src.endswith(last["file"])
    assert [float(t) for t in fragment.split(",")] == pytest.approx([last["start"], last["end"]])
    shown = card.find_element(By.CSS_SELECTOR, ".range").text
    assert shown.startswith("0:0") and "–" in shown
    wait(browser).until(lambda d: d.execute_script("return arguments[0].readyState >= 1", player))
    at = browser.execute_script("return arguments[0].currentTime", player)
    assert at == pytest.approx(last["start"], abs=0.3)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web-video-segment.png"))
