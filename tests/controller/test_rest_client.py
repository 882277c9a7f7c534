"""The REST client of the controller commands (``mlflow_plugin.mlflow_io._rest``): the CLI never imports
mlflow, errors map as MLflow's client's do, pagination and retries hold."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from mlflow_plugin.controller import Controller
from mlflow_plugin.errors import (
    BadInput,
    NotFound,
    PermissionDenied,
    RegistryError,
    RegistryUnavailable,
)
from mlflow_plugin.mlflow_io._client import as_plugin_error, make_client
from mlflow_plugin.mlflow_io._rest import RestClient, RestError
from mlflow_plugin.mlflow_io._rest_http import _verify
from mlflow_plugin.testing import free_port

from helpers import make_versions
from helpers import run_cli_without_mlflow as run_cli


@pytest.mark.integration
class TestCliWithoutMlflow:
    def test_rollback_status_events_never_import_mlflow(self, tracking_uri, model_name, tmp_path):
        """rollback (lock, digest check of the target, aliases, stage mirror, ledger event),
        then status, events, verify-ledger, fallback status and reconcile: right results,
        and not one module of mlflow imported."""
        make_versions(tracking_uri, model_name, 2)
        ctl = Controller.from_uri(tracking_uri)
        ctl.promote(model_name, "1")
        ctl.promote(model_name, "2")
        runs = [
            ["rollback", model_name, "--reason", "bad canary"],
            ["status", model_name, "--json"],
            ["events", "--model", model_name, "--format", "json"],
            ["verify-ledger", model_name],
            ["fallback", "status", model_name],
            ["reconcile", model_name],
        ]
        result, proc = run_cli(tmp_path, runs, {"MLFLOW_TRACKING_URI": tracking_uri})
        assert result["codes"] == [0] * len(runs), proc.stderr[-3000:]
        assert result["mlflow_modules"] == []
        info = ctl.registry.get_model(model_name)
        assert info.aliases["champion"] == "1"
        stages = {v.version: v.stage for v in ctl.registry.list_versions(model_name)}
        assert stages == {"1": "Production", "2": "Archived"}
        last = ctl.ledger.events(model_name)[-1]
        assert (last.event_type, last.version, last.from_version) == ("rollback", "1", "2")
        assert (last.message, last.actor) == ("bad canary", "pytest")
        assert last.extra["mlflow_plugin.integrity"] == "verified"
        assert ctl.ledger.verify_chain(model_name).ok
        assert ctl.registry.lock_status(model_name) is None
        assert '"champion": "1"' in proc.stdout and '"event_type": "rollback"' in proc.stdout

    def test_switch_off_uses_mlflows_client(self, tracking_uri, model_name, tmp_path):
        """MLFLOW_PLUGIN_REST_CLIENT=off: the same command through MlflowClient."""
        make_versions(tracking_uri, model_name, 1)
        Controller.from_uri(tracking_uri).promote(model_name, "1")
        result, proc = run_cli(
            tmp_path,
            [["status", model_name]],
            {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_PLUGIN_REST_CLIENT": "off"},
        )
        assert result["codes"] == [0], proc.stderr[-3000:]
        assert "mlflow" in result["mlflow_modules"]

    def test_unknown_model_is_exit_2_with_its_name(self, tracking_uri, tmp_path):
        """Not found: one line naming the model, exit 2, still without mlflow."""
        runs = [["status", "no-such-model"], ["rollback", "no-such-model", "--reason", "x"]]
        result, proc = run_cli(tmp_path, runs, {"MLFLOW_TRACKING_URI": tracking_uri})
        assert result["codes"] == [2, 2], proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 2 and all("'no-such-model' does not exist" in x for x in lines)
        assert result["mlflow_modules"] == []


def test_server_down_is_exit_4_naming_the_redacted_uri(tmp_path):
    """Nothing listens: exit 4, one line with the URI without its password, no mlflow."""
    uri = f"http://alice:hunter2@127.0.0.1:{free_port()}"
    result, proc = run_cli(
        tmp_path,
        [["--tracking-uri", uri, "rollback", "m", "--reason", "x"]],
        {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    assert result["codes"] == [4], proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "***@127.0.0.1" in proc.stderr and "hunter2" not in proc.stderr + proc.stdout
    assert result["mlflow_modules"] == []


def _response(status: int, body: str) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = body.encode()
    resp.encoding = "utf-8"
    return resp


ANSWERS = [
    (404, '{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Model m not found"}', NotFound),
    (400, '{"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"}', RegistryError),
    (400, '{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}', BadInput),
    (403, '{"error_code": "PERMISSION_DENIED", "message": "no"}', PermissionDenied),
    (401, "You are not authenticated.", PermissionDenied),
    (403, "<html>Forbidden</html>", PermissionDenied),
    (500, '{"error_code": "INTERNAL_ERROR", "message": "boom"}', RegistryError),
    # a proxy's page instead of MLflow's answer: the server is not reached as such
    (502, "Bad Gateway", RegistryUnavailable),
    (404, "<html>Not Found</html>", RegistryUnavailable),
]


@pytest.mark.parametrize(("status", "body", "expected"), ANSWERS)
def test_errors_translate_as_mlflows_do(status, body, expected):
    """Each answer: our RestError and MLflow's own exception (from its verify_rest_response)
    carry the same error code and text, and become the same error of ours."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import verify_rest_response

    endpoint = "/api/2.0/mlflow/registered-models/get"
    with pytest.raises(RestError) as ours:
        _verify(_response(status, body), endpoint)
    with pytest.raises(MlflowException) as theirs:
        verify_rest_response(_response(status, body), endpoint)
    assert ours.value.message == theirs.value.message
    assert ours.value.error_code == theirs.value.error_code
    a, b = as_plugin_error(ours.value, "x", "u"), as_plugin_error(theirs.value, "x", "u")
    assert type(a) is type(b) is expected and str(a) == str(b)
    if isinstance(a, PermissionDenied):
        assert a.unauthenticated == b.unauthenticated


class _Failing(BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).calls += 1
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_transient_errors_are_retried_then_reported(monkeypatch):
    """A server answering 500: retried MLFLOW_HTTP_REQUEST_MAX_RETRIES times, then
    RegistryError "answered HTTP 500" (reachable, but failing), as with MLflow's client."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(RestError) as raised:
            RestClient(uri).get_registered_model("m")
        assert _Failing.calls == 3
        ours = as_plugin_error(raised.value, "model 'm'", uri)
        assert type(ours) is RegistryError and "answered HTTP 500" in str(ours)
    finally:
        server.shutdown()


def test_connection_refused_is_unavailable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RestError) as raised:
        RestClient(uri).get_registered_model("m")
    assert isinstance(as_plugin_error(raised.value, "x", uri), RegistryUnavailable)


def test_request_options_follow_mlflows_variables(monkeypatch, tmp_path):
    """Basic auth (env, else ~/.mlflow/credentials), token, TLS and workspace settings."""
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok")
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    opts = RestClient("https://h")._request_options()
    assert opts["headers"]["Authorization"] == "Bearer tok" and "auth" not in opts
    assert opts["headers"]["X-MLFLOW-WORKSPACE"] == "team-a" and opts["verify"] is False
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = u\nmlflow_tracking_password = p\n"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/ca.pem")
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", "/client.pem")
    opts = RestClient("https://h")._request_options()
    assert opts["auth"] == ("u", "p") and "Authorization" not in opts["headers"]
    assert opts["verify"] == "/ca.pem" and opts["cert"] == "/client.pem"


def test_switch_and_schemes(monkeypatch):
    """REST for http(s) only, and not with MLFLOW_PLUGIN_REST_CLIENT=off."""
    assert isinstance(make_client("http://127.0.0.1:1", rest=True), RestClient)
    assert not isinstance(make_client("http://127.0.0.1:1"), RestClient)
    monkeypatch.setenv("MLFLOW_PLUGIN_REST_CLIENT", "off")
    assert not isinstance(make_client("http://127.0.0.1:1", rest=True), RestClient)


@pytest.mark.integration
def test_searches_page_to_the_end(tracking_uri, model_name):
    """page_token is followed: every version and every run, whatever the page size."""
    make_versions(tracking_uri, model_name, 5)
    client = RestClient(tracking_uri)
    seen, token = [], None
    while True:
        page = client.search_model_versions(
            f"name = '{model_name}'", max_results=2, page_token=token
        )
        seen += [mv.version for mv in page]
        token = page.token
        if not token:
            break
    assert sorted(seen, key=int) == ["1", "2", "3", "4", "5"]
    ctl = Controller.from_uri(tracking_uri, rest=True)
    for v in ("1", "2", "3"):
        ctl.promote(model_name, v)
    exp = ctl.ledger.experiment_id()
    runs, token = [], None
    while True:
        page = client.search_runs([exp], "", max_results=1, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    assert len({r.info.run_id for r in runs}) == len(runs) >= 3
