"""The FileBrowser routes (`--filebrowser`): the data folder's files, and nothing outside it."""
import requests


def test_list_upload_download_delete_round_trip(make_server):
    s = make_server("--filebrowser", "--token", "fb-token")
    auth = {"Authorization": "fb-token"}
    top = requests.get(s.url + "/atelier/files", headers=auth, timeout=10).json()
    assert top["path"] == "" and {"models", "outputs"} <= {i["name"] for i in top["items"] if i["is_dir"]}
    r = requests.post(s.url + "/atelier/files/upload", params={"path": "models/Lora/a b.txt"}, data=b"abc", headers=auth, timeout=10)
    assert r.status_code == 201 and r.json() == {"path": "models/Lora/a b.txt", "size": 3}
    listed = requests.get(s.url + "/atelier/files", params={"path": "models/Lora"}, headers=auth, timeout=10).json()["items"]
    assert {"name": "a b.txt", "is_dir": False, "size": 3} == {k: listed[0][k] for k in ("name", "is_dir", "size")}
    got = requests.get(s.url + "/atelier/files/download", params={"path": "models/Lora/a b.txt"}, headers=auth, timeout=10)
    assert got.content == b"abc" and "attachment" in got.headers["Content-Disposition"]
    assert requests.delete(s.url + "/atelier/files", params={"path": "models/Lora/a b.txt"}, headers=auth, timeout=10).status_code == 200
    assert requests.get(s.url + "/atelier/files", params={"path": "models/Lora"}, headers=auth, timeout=10).json()["items"] == []


def test_paths_outside_the_data_folder_are_refused_naming_path(make_server):
    s = make_server("--filebrowser")
    for p in ("../", "../../etc/passwd", "/etc/passwd", "models/../../x"):
        for method, url in (("GET", "/atelier/files"), ("GET", "/atelier/files/download"), ("POST", "/atelier/files/upload"),
                            ("DELETE", "/atelier/files")):
            r = requests.request(method, s.url + url, params={"path": p}, data=b"x", timeout=10)
            assert r.status_code == 400 and "path" in r.text, (method, url, p, r.status_code, r.text)


def test_routes_exist_only_with_the_flag_and_need_the_token(make_server):
    s = make_server("--token", "t1")
    assert requests.get(s.url + "/atelier/files", headers={"Authorization": "t1"}, timeout=10).status_code == 404
    s2 = make_server("--filebrowser", "--token", "t2")
    assert requests.get(s2.url + "/atelier/files", timeout=10).status_code == 401
    assert requests.post(s2.url + "/atelier/files/upload", params={"path": "x.txt"}, data=b"x", timeout=10).status_code == 401
