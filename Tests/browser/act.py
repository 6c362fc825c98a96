#!/usr/bin/env python3
"""Drives Debian's headless chromium over the DevTools protocol, for the dashboard's end-to-end tests:
opens URL (with extra request headers), runs a script in the page once it has loaded, waits until the
page's address contains --until, and prints that address. Exit 1 with what went wrong otherwise.
Only the standard library: a websocket client of a few lines is enough for one local browser."""
import argparse, base64, json, os, re, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.parse, urllib.request


class DevTools:
    def __init__(self, url):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(4096)
        if b" 101 " not in answer.split(b"\r\n", 1)[0]:
            raise RuntimeError("no websocket upgrade: %r" % answer[:200])
        self.buffer = answer.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the browser closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _frame(self):
        payload = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload += self._read(length)
            if first & 0x80:
                return payload

    def call(self, method, **params):
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            message = json.loads(self._frame())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError("the page's script failed: %s" % result["exceptionDetails"])
        return result.get("result", {}).get("value")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[], help="Name: value, sent with every request")
    parser.add_argument("--script", required=True, help="JavaScript run in the page once it has loaded")
    parser.add_argument("--until", required=True, help="wait until location.href contains this")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    profile = tempfile.mkdtemp(prefix="stager-chromium-")
    browser = subprocess.Popen([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                                f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        endpoint = None
        while endpoint is None and time.time() < deadline:
            line = browser.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                endpoint = found.group(1)
        if endpoint is None:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        port = urllib.parse.urlparse(endpoint).port
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = DevTools(next(p for p in pages if p.get("type") == "page")["webSocketDebuggerUrl"])
        page.call("Network.enable")
        headers = dict(h.split(": ", 1) for h in args.header)
        page.call("Network.setExtraHTTPHeaders", headers=headers)
        page.call("Page.navigate", url=args.url)
        while time.time() < deadline and page.evaluate("document.readyState + ' ' + location.href") != "complete " + args.url:
            time.sleep(0.1)
        page.evaluate(args.script)
        while time.time() < deadline + 30:
            href = page.evaluate("document.readyState === 'complete' ? location.href : ''")
            if href and args.until in href:
                print(href)
                return 0
            time.sleep(0.1)
        raise RuntimeError("the page never reached an address containing %r" % args.until)
    except Exception as error:
        print(f"act.py: {error}", file=sys.stderr)
        return 1
    finally:
        browser.kill()
        browser.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
