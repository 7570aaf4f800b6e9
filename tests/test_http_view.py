"""The request a client library sends, shown as people type it, and JSON shortened for reading."""
import json
import shlex

from helpers.formats import http


def test_curl_lines_round_trip_through_the_shell():
    body = {"model": "m", "messages": [{"role": "user", "content": "it's 17 + 25?"}]}
    line = http.curl("POST", "http://127.0.0.1:8000/v1/chat/completions", body)
    argv = shlex.split(line)
    assert argv[:3] == ["curl", "-s", "http://127.0.0.1:8000/v1/chat/completions"] and "-X" not in argv
    assert json.loads(argv[argv.index("-d") + 1]) == body
    assert http.curl("GET", "http://x/api/tags") == "curl -s http://x/api/tags"
    assert shlex.split(http.curl("DELETE", "http://x/api/delete", {"model": "m"}))[2:4] == ["-X", "DELETE"]


def test_previews_cut_long_strings_and_lines_and_say_so():
    text = http.preview({"answer": "x" * 500, "tokens": list(range(100))}, max_lines=10, max_string=20)
    lines = text.splitlines()
    assert len(lines) == 11 and lines[-1] == "… (95 more lines)" and "… (500 characters)" in lines[1]
