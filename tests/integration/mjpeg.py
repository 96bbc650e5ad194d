"""An MJPEG-over-HTTP camera on loopback, made from a video file, that a
test can cut off and bring back, like a real IP camera losing its link.

The frame served follows wall time (``start_frame + elapsed * fps``), so
frames during an outage are lost, as with a live camera.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np


class MjpegCamera:
    def __init__(self, video: Path, fps: float = 20.0, start_frame: int = 0) -> None:
        cap = cv2.VideoCapture(str(video))
        self._frames: list[bytes] = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            self._frames.append(cv2.imencode(".jpg", img)[1].tobytes())
        cap.release()
        self.fps = fps
        self.start_frame = start_frame
        self._t0 = time.monotonic()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._live = threading.Event()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"

    def frame_now(self) -> bytes:
        i = self.start_frame + int((time.monotonic() - self._t0) * self.fps)
        return self._frames[i % len(self._frames)]

    def start(self) -> None:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while camera._live.is_set():
                        jpg = camera.frame_now()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                            % len(jpg)
                        )
                        self.wfile.write(jpg + b"\r\n")
                        time.sleep(1.0 / camera.fps)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._live.set()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        """Stop streaming and refuse connections."""
        self._live.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restore(self) -> None:
        self.start()


def blank_jpeg() -> bytes:
    return cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
