"""Images in chat through the daemon: a real vLLM engine serving a tiny vision-language model
(tests/e2e/tiny_vlm.py: a random vision tower, so the answers mean nothing; what is checked is
that vLLM took the image), with seed 001's style of multimodal extraArgs (`--limit-mm-per-prompt`),
through the openai client on both routes, the image as a `data:` URL and as an `http` URL served
on loopback."""

import base64
import functools
import http.server
import io
import threading

import pytest
from openai import BadRequestError, OpenAI, APIStatusError
from PIL import Image

from tests.e2e.daemon_process import DaemonProcess
from tests.e2e.tiny_vlm import IMAGE_SEQ_LEN, build_tiny_vlm

pytestmark = pytest.mark.timeout(900)

QUESTION = {"type": "text", "text": "What is in this image?"}


def png(width: int, height: int, colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def data_url(image: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An HTTP server on loopback with red.png (96x64); yields its base URL."""
    root = tmp_path_factory.mktemp("images")
    (root / "red.png").write_bytes(png(96, 64))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def vlm(tmp_path_factory, checkpoint):
    model = build_tiny_vlm(checkpoint, tmp_path_factory.mktemp("checkpoints") / "tiny-vlm")
    d = DaemonProcess(tmp_path_factory.mktemp("gthreadd"), checkpoint, {"HF_HUB_OFFLINE": "1"},
                      flags=("--max-request-bytes", "1Mi"))
    d.write_model("vlm.yaml", "vlm", "--max-model-len", "2048", "--limit-mm-per-prompt", '{"image": 1}',
                  model_name=str(model), utilization="0.08")
    d.start()
    d.wait_state("vlm", "serving")
    yield d
    d.kill()


def chat(d: DaemonProcess, route: str, content: list) -> tuple[int, str]:
    """(prompt tokens, answer) through the openai client; `route` "path" is /vlm/v1, "body" /v1."""
    client = OpenAI(base_url=f"{d.url}/vlm/v1" if route == "path" else f"{d.url}/v1", api_key="unused", timeout=300)
    response = client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": content}],
                                              max_tokens=4, temperature=0)
    return response.usage.prompt_tokens, response.choices[0].message.content


@pytest.mark.parametrize("route", ["path", "body"])
@pytest.mark.parametrize("source", ["data", "http"])
def test_an_image_chat_is_answered_with_the_images_tokens_counted(vlm, images, route, source):
    text_only, _ = chat(vlm, route, [QUESTION])
    image = data_url(png(96, 64)) if source == "data" else {"type": "image_url",
                                                              "image_url": {"url": f"{images}/red.png"}}
    with_image, answer = chat(vlm, route, [image, QUESTION])
    assert answer, "the model answered"
    # the image's <image> tokens, and the processor's few around them (fake tokens, <global-img>)
    assert IMAGE_SEQ_LEN <= with_image - text_only <= IMAGE_SEQ_LEN + 6, (text_only, with_image)


def test_more_images_than_the_models_limit_is_a_400_that_says_so(vlm):
    with pytest.raises(BadRequestError) as refused:
        chat(vlm, "body", [data_url(png(8, 8)), data_url(png(8, 8)), QUESTION])
    assert "At most 1 image(s) may be provided in one prompt" in refused.value.message


def test_an_image_over_the_pixel_limit_is_a_400_that_names_it(vlm):
    """20000 x 10000 pixels (a 0.6 MB PNG): over vLLM's VLLM_MAX_IMAGE_PIXELS, and over Pillow's
    own guard, which had made it a 500 (engine/api_app.py)."""
    with pytest.raises(BadRequestError) as refused:
        chat(vlm, "path", [data_url(png(20000, 10000, (0, 0, 0))), QUESTION])
    assert "exceed the maximum of 178956970 pixels" in refused.value.message
    assert "VLLM_MAX_IMAGE_PIXELS" in refused.value.message


def test_an_image_that_is_not_one_or_not_there_is_a_client_error(vlm, images):
    with pytest.raises(BadRequestError) as refused:
        chat(vlm, "body", [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, QUESTION])
    assert "Failed to load image" in refused.value.message
    with pytest.raises(APIStatusError) as missing:
        chat(vlm, "body", [{"type": "image_url", "image_url": {"url": f"{images}/missing.png"}}, QUESTION])
    assert missing.value.status_code == 422 and "HTTP 404" in missing.value.message


def test_a_data_url_over_max_request_bytes_is_a_413(vlm):
    noise = Image.effect_noise((800, 800), 64).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert len(buffer.getvalue()) * 4 / 3 > 1 << 20
    with pytest.raises(APIStatusError) as refused:
        chat(vlm, "body", [data_url(buffer.getvalue()), QUESTION])
    assert refused.value.status_code == 413
    assert refused.value.body["message"] == "the request body is over 1048576 bytes (maxRequestBytes)"
