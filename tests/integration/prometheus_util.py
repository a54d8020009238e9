"""A real Prometheus server (Debian's package) for integration tests: start
it on a free loopback port with a scrape configuration, and run PromQL."""
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout):
    """fn's first truthy result within `timeout` seconds (exceptions count as
    not yet); AssertionError naming `what` after that."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            result = fn()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def start_prometheus(binary, work, scrape_configs):
    """Starts `binary` scraping every second with `scrape_configs` (YAML list
    items, indented by two spaces); returns (process, port) once it is ready."""
    config = os.path.join(work, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "  evaluation_interval: 1s\nscrape_configs:\n" + scrape_configs)
    for _ in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        log = open(os.path.join(work, f"prometheus-{port}.log"), "w+")
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for("prometheus /-/ready", lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200, 20)
            return proc, port
        except AssertionError:
            if proc.poll() is None:
                proc.kill()
                raise
            log.seek(0)
            print("prometheus exited, retrying:", log.read()[-500:])
    raise AssertionError("prometheus did not start")


def promql(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]
