#!/usr/bin/env python3
"""token_server.py KEY.pem CERT.pem PORT — a Docker-Hub-style bearer token server.

With USERS=user:pass set, the token endpoint demands those Basic credentials; otherwise
anyone gets a token (anonymous pulls, as on Docker Hub). Tokens are RS256 JWTs carrying the
signing certificate in `x5c`, which is what docker-registry's token auth verifies.
"""
import base64, json, os, sys, time, uuid, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

KEY = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
CERT = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read()).public_bytes(serialization.Encoding.DER)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        users, subject = os.environ.get("USERS"), "anonymous"
        if users:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Basic ") or base64.b64decode(auth[6:]).decode() != users:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="token"')
                self.end_headers()
                return
            subject = users.split(":")[0]
        access = []
        for scope in query.get("scope", []):
            kind, rest = scope.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "test-issuer", "sub": subject, "aud": query.get("service", [""])[0], "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        head = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT).decode()]}
        message = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
        token = f"{message}.{b64(KEY.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256()))}"
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), Handler).serve_forever()
