"""/openapi.json and /docs describe the API the server really answers."""
import requests


def test_openapi_lists_routes_the_server_answers(server):
    doc = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    gets = [p for p, ops in doc["paths"].items() if "get" in ops and "{" not in p]
    assert "/sdapi/v1/options" in gets and "/sdapi/v1/sd-models" in gets
    for p in gets:
        r = requests.get(server.url + p, timeout=30)
        assert r.status_code == 200, (p, r.status_code, r.text[:200])
    assert "post" in doc["paths"]["/sdapi/v1/txt2img"]


def test_txt2img_schema_has_the_fields_the_server_echoes_with_their_defaults(server):
    doc = requests.get(server.url + "/openapi.json", timeout=10).json()
    props = doc["components"]["schemas"]["StableDiffusionTxt2ImgProcessingAPI"]["properties"]
    echoed = requests.post(server.url + "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64},
                           timeout=120).json()["parameters"]
    assert set(echoed) <= set(props), set(echoed) - set(props)
    assert props["steps"]["default"] == 50 and props["cfg_scale"]["default"] == 7
    assert "Euler a" in props["sampler_name"]["enum"]
    img2img = doc["components"]["schemas"]["StableDiffusionImg2ImgProcessingAPI"]["properties"]
    assert "init_images" in img2img and "mask_blur_x" in img2img and "enable_hr" not in img2img


def test_docs_page_is_served_and_reads_the_openapi_document(server):
    r = requests.get(server.url + "/docs", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "openapi.json" in r.text


def test_openapi_and_docs_need_the_token_when_one_is_set(make_server):
    s = make_server("--token", "doc-token", "--nowebui")
    for path in ("/openapi.json", "/docs"):
        assert requests.get(s.url + path, timeout=10).status_code == 401
        assert requests.get(s.url + path, headers={"Authorization": "doc-token"}, timeout=10).status_code == 200
