#!/usr/bin/env python3
"""msntap's own scripted MSNP15 client for recording test captures on 127.0.0.1.

Two accounts against a local MSN revival server (NS :1863, SB :1864, HTTP :8081):
alice logs in with SSO (RST2.srf over plain HTTP, the USR SSO S response computed from
the BinarySecret), goes online, opens a switchboard and invites bob, they exchange two
messages and log out. bob always uses plain TCP. alice's NS and SB connections go over
plain TCP (--mode tcp) or through the HTTP gateway /gateway/gateway.dll (--mode gateway):
open, SessionID requests, polls (empty ones too), both of alice's gateway sessions and her
RST2 call on one keep-alive HTTP connection, some requests with Expect: 100-continue or a
chunked body, and the session moved to a second TCP connection midway.

It prints what it sent and received to stdout. It only talks to the host given (default
127.0.0.1) and stops by itself.
"""

import argparse
import base64
import hashlib
import hmac
import os
import re
import socket
import struct
import sys
import time

from cryptography.hazmat.primitives.ciphers import Cipher, modes

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

LOG = []


def log(*a):
    line = " ".join(str(x) for x in a)
    LOG.append(line)
    print(line, flush=True)


# ---------------------------------------------------------------- HTTP/1.1 over a socket


class Http:
    """A keep-alive HTTP/1.1 client that writes its requests byte by byte as asked."""

    def __init__(self, host, port):
        self.addr = (host, port)
        self.sock = None
        self.buf = b""
        self.connections = 0

    def connect(self):
        self.close()
        self.sock = socket.create_connection(self.addr, timeout=10)
        self.connections += 1
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_more(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("HTTP server closed the connection")
        self.buf += d

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._read_more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._read_more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self, method, target, headers, body=b"", expect=False, chunked=False):
        if self.sock is None:
            self.connect()
        hdrs = dict(headers)
        hdrs.setdefault("Host", "%s:%d" % self.addr)
        if chunked:
            hdrs["Transfer-Encoding"] = "chunked"
        elif method == "POST" or body:
            hdrs["Content-Length"] = str(len(body))
        if expect:
            hdrs["Expect"] = "100-continue"
        head = "%s %s HTTP/1.1\r\n" % (method, target)
        head += "".join("%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.sock.sendall(head.encode("latin-1"))
        if expect:
            status, h = self._read_head()
            if status != 100:
                raise RuntimeError("expected 100 Continue, got %d" % status)
            log("  http: 100 Continue")
        if chunked:
            # Two chunks and an empty trailer section.
            half = len(body) // 2
            for part in (body[:half], body[half:]):
                if part:
                    self.sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            self.sock.sendall(b"0\r\n\r\n")
        elif body:
            self.sock.sendall(body)
        while True:
            status, h = self._read_head()
            if 100 <= status < 200:
                continue
            break
        if "content-length" in h:
            data = self._read_exact(int(h["content-length"]))
        elif h.get("transfer-encoding", "").lower().endswith("chunked"):
            data = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._read_more()
                line, self.buf = self.buf.split(b"\r\n", 1)
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    while b"\r\n" not in self.buf:
                        self._read_more()
                    self.buf = self.buf.split(b"\r\n", 1)[1]
                    break
                data += self._read_exact(n + 2)[:-2]
        else:
            data = b""
        return status, h, data


# ---------------------------------------------------------------- MSNP transports


class TcpTransport:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return b""

    def close(self):
        self.sock.close()


class GatewayTransport:
    """One MSNP connection carried by gateway.dll requests over a shared Http client."""

    counter = 0

    def __init__(self, http, server, ip):
        self.http = http
        self.server = server
        self.ip = ip
        self.sid = None
        self.gw_ip = None
        self.inbox = b""
        self.polls = 0

    def _post(self, query, body, **kw):
        host = self.gw_ip or "gateway.messenger.hotmail.com"
        target = "http://%s/gateway/gateway.dll?%s" % (host, query)
        status, h, data = self.http.request(
            "POST",
            target,
            {
                "Accept": "*/*",
                "Accept-Language": "en-us",
                "User-Agent": "MSMSGS",
                "Content-Type": "application/x-msn-messenger",
                "Proxy-Connection": "Keep-Alive",
                "Pragma": "no-cache",
            },
            body,
            **kw,
        )
        if status != 200:
            raise RuntimeError("gateway answered %d" % status)
        xm = h.get("x-msn-messenger", "")
        m = re.search(r"SessionID=([^;\s]+)", xm)
        if m:
            self.sid = m.group(1)
        m = re.search(r"GW-IP=([^;\s]+)", xm)
        if m:
            self.gw_ip = m.group(1)
        self.inbox += data

    def send(self, data):
        GatewayTransport.counter += 1
        n = GatewayTransport.counter
        # Vary the request framing so the capture has each kind.
        kw = {}
        if n % 4 == 2:
            kw["expect"] = True
        elif n % 4 == 3:
            kw["chunked"] = True
        if self.sid is None:
            self._post("Action=open&Server=%s&IP=%s" % (self.server, self.ip), data, **kw)
        else:
            self._post("SessionID=%s" % self.sid, data, **kw)

    def recv(self, timeout):
        if not self.inbox:
            time.sleep(min(timeout, 0.3))
            self.polls += 1
            self._post("Action=poll&SessionID=%s" % self.sid, b"")
        out, self.inbox = self.inbox, b""
        return out

    def close(self):
        pass


# ---------------------------------------------------------------- MSNP framing

PAYLOAD = {"MSG", "GCF", "UBX", "NOT", "ADL", "RML", "UUX", "UUN", "UBN", "UBM", "FQY", "IPG", "NFY", "SDG", "QRY"}


class Msnp:
    def __init__(self, name, transport):
        self.name = name
        self.t = transport
        self.buf = b""
        self.trid = 0

    def next_trid(self):
        self.trid += 1
        return self.trid

    def send(self, line, payload=None):
        data = line.encode() + b"\r\n" + (payload or b"")
        log("%s >>> %s%s" % (self.name, line, " [%d bytes]" % len(payload) if payload else ""))
        self.t.send(data)

    def _one(self):
        i = self.buf.find(b"\r\n")
        if i < 0:
            return None
        line = self.buf[:i].decode("utf-8", "replace")
        parts = line.split(" ")
        n = 0
        if parts[0] in PAYLOAD and len(parts) > 1 and parts[-1].isdigit():
            n = int(parts[-1])
        if len(self.buf) < i + 2 + n:
            return None
        payload = self.buf[i + 2 : i + 2 + n]
        self.buf = self.buf[i + 2 + n :]
        log("%s <<< %s%s" % (self.name, line, " [%d bytes]" % n if n else ""))
        return parts, payload

    def expect(self, cmd, timeout=10.0, trid=None):
        """Reads commands until `cmd` (with `trid` when given) arrives; returns it."""
        end = time.time() + timeout
        while True:
            c = self._one()
            if c is not None:
                parts, payload = c
                if parts[0] == cmd and (trid is None or parts[1:2] == [str(trid)]):
                    return parts, payload
                if parts[0].isdigit():
                    raise RuntimeError("%s: error %s" % (self.name, " ".join(parts)))
                continue
            if time.time() > end:
                raise TimeoutError("%s: no %s" % (self.name, cmd))
            self.buf += self.t.recv(0.5)

    def drain(self, seconds):
        """Reads whatever arrives for a while (presence pushes)."""
        end = time.time() + seconds
        while time.time() < end:
            c = self._one()
            if c is None:
                self.buf += self.t.recv(0.3)


# ---------------------------------------------------------------- SSO


def rps_derive(key, magic):
    h1 = hmac.new(key, magic, hashlib.sha1).digest()
    h2 = hmac.new(key, h1 + magic, hashlib.sha1).digest()
    h3 = hmac.new(key, h1, hashlib.sha1).digest()
    h4 = hmac.new(key, h3 + magic, hashlib.sha1).digest()
    return h2 + h4[:4]


def sso_response(binary_secret_b64, nonce, iv=None):
    key1 = base64.b64decode(binary_secret_b64)
    key2 = rps_derive(key1, b"WS-SecureConversationSESSION KEY HASH")
    key3 = rps_derive(key1, b"WS-SecureConversationSESSION KEY ENCRYPTION")
    n = nonce.encode()
    digest = hmac.new(key2, n, hashlib.sha1).digest()
    pad = 8 - len(n) % 8
    iv = iv if iv is not None else os.urandom(8)
    enc = Cipher(TripleDES(key3), modes.CBC(iv)).encryptor()
    ct = enc.update(n + bytes([pad]) * pad) + enc.finalize()
    blob = struct.pack("<7I", 28, 1, 0x6603, 0x8004, 8, 20, len(ct)) + iv + digest + ct
    return base64.b64encode(blob).decode()


RST2_DOMAINS = [
    ("http://Passport.NET/tb", None),
    ("messengerclear.live.com", "MBI_KEY_OLD"),
    ("messenger.msn.com", "?id=507"),
    ("contacts.msn.com", "MBI"),
    ("messengersecure.live.com", "MBI_SSL"),
    ("storage.msn.com", "MBI"),
]


def rst2_request(email, password):
    tokens = []
    for i, (addr, policy) in enumerate(RST2_DOMAINS):
        pol = '<wsp:PolicyReference URI="%s"></wsp:PolicyReference>' % policy if policy else ""
        tokens.append(
            '<wst:RequestSecurityToken Id="RST%d"><wst:RequestType>http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</wst:RequestType>'
            "<wsp:AppliesTo><wsa:EndpointReference><wsa:Address>%s</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>%s</wst:RequestSecurityToken>"
            % (i, addr, pol)
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/" xmlns:wsse="http://schemas.xmlsoap.org/ws/2003/06/secext"'
        ' xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" xmlns:wsp="http://schemas.xmlsoap.org/ws/2002/12/policy"'
        ' xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"'
        ' xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/03/addressing" xmlns:wssc="http://schemas.xmlsoap.org/ws/2004/04/sc"'
        ' xmlns:wst="http://schemas.xmlsoap.org/ws/2004/04/trust">'
        '<Header><ps:AuthInfo xmlns:ps="http://schemas.microsoft.com/Passport/SoapServices/PPCRL" Id="PPAuthInfo">'
        "<ps:HostingApp>{7108E71A-9926-4FCB-BCC9-9A9D3F32E423}</ps:HostingApp><ps:BinaryVersion>4</ps:BinaryVersion>"
        "<ps:UIVersion>1</ps:UIVersion><ps:Cookies></ps:Cookies><ps:RequestParams>AQAAAAIAAABsYwQAAAAxMDMz</ps:RequestParams></ps:AuthInfo>"
        "<wsse:Security><wsse:UsernameToken Id=\"user\"><wsse:Username>%s</wsse:Username><wsse:Password>%s</wsse:Password></wsse:UsernameToken></wsse:Security>"
        "</Header><Body><ps:RequestMultipleSecurityTokens xmlns:ps=\"http://schemas.microsoft.com/Passport/SoapServices/PPCRL\" Id=\"RSTS\">"
        "%s</ps:RequestMultipleSecurityTokens></Body></Envelope>" % (email, password, "".join(tokens))
    ).encode()


def sso_login(http, email, password):
    """RST2 over HTTP: returns (ticket for messengerclear.live.com, its BinarySecret)."""
    status, h, body = http.request(
        "POST", "/RST2.srf", {"Content-Type": "text/xml; charset=utf-8", "User-Agent": "msntap-scenario"}, rst2_request(email, password)
    )
    text = body.decode("utf-8", "replace")
    log("  RST2: HTTP %d, %d bytes" % (status, len(body)))
    m = re.search(
        r"<wsa:Address>messengerclear\.live\.com</wsa:Address>.*?<wsse:BinarySecurityToken[^>]*>([^<]*)</wsse:BinarySecurityToken>.*?<wst:BinarySecret>([^<]*)</wst:BinarySecret>",
        text,
        re.S,
    )
    if not m:
        raise RuntimeError("RST2: no messengerclear token in the answer")
    return m.group(1).replace("&amp;", "&"), m.group(2)


# ---------------------------------------------------------------- the scenario


def ns_login(ns, email, password, http):
    t = ns.next_trid()
    ns.send("VER %d MSNP15 CVR0" % t)
    ns.expect("VER", trid=t)
    t = ns.next_trid()
    ns.send("CVR %d 0x0409 winnt 5.1 i386 MSNMSGR 8.5.1302 msmsgs %s" % (t, email))
    ns.expect("CVR", trid=t)
    t = ns.next_trid()
    ns.send("USR %d SSO I %s" % (t, email))
    parts, _ = ns.expect("USR", trid=t)
    policy, nonce = parts[4], parts[5]
    ticket, secret = sso_login(http, email, password)
    resp = sso_response(secret, nonce)
    t = ns.next_trid()
    ns.send("USR %d SSO S %s %s" % (t, ticket, resp))
    ns.expect("USR", trid=t)
    t = ns.next_trid()
    ns.send("BLP %d AL" % t)
    ns.expect("BLP", trid=t)
    t = ns.next_trid()
    ns.send("PRP %d MFN %s" % (t, email.split("@")[0]))
    ns.expect("PRP", trid=t)
    t = ns.next_trid()
    ns.send("CHG %d NLN 0" % t)
    ns.expect("CHG", trid=t)


def msg_payload(text):
    return (
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
        "X-MMS-IM-Format: FN=Arial; EF=; CO=0; CS=0; PF=22\r\n\r\n" + text
    ).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["tcp", "gateway"], required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=8081)
    ap.add_argument("--password", default="password1")
    a = ap.parse_args()
    host = a.host

    # bob: plain TCP throughout; his RST2 on an HTTP connection of his own.
    bob_http = Http(host, a.http_port)
    bob = Msnp("bob/NS", TcpTransport(host, 1863))
    ns_login(bob, "bob@example.com", a.password, bob_http)
    bob_http.close()

    # alice: one keep-alive HTTP connection for her RST2 and (gateway mode) her NS and SB.
    http = Http(host, a.http_port)
    if a.mode == "gateway":
        ns_t = GatewayTransport(http, "NS", "messenger.hotmail.com")
    else:
        ns_t = TcpTransport(host, 1863)
    alice = Msnp("alice/NS", ns_t)
    ns_login(alice, "alice@example.com", a.password, http)
    bob.drain(0.5)

    t = alice.next_trid()
    alice.send("XFR %d SB" % t)
    parts, _ = alice.expect("XFR", trid=t)
    sb_addr, cookie = parts[3], parts[5]
    if a.mode == "gateway":
        sb_t = GatewayTransport(http, "SB", sb_addr)
    else:
        h, p = sb_addr.split(":")
        sb_t = TcpTransport(h, int(p))
    asb = Msnp("alice/SB", sb_t)
    t = asb.next_trid()
    asb.send("USR %d alice@example.com %s" % (t, cookie))
    asb.expect("USR", trid=t)
    t = asb.next_trid()
    asb.send("CAL %d bob@example.com" % t)
    asb.expect("CAL", trid=t)

    parts, _ = bob.expect("RNG")
    sid, sb2, bcookie = parts[1], parts[2], parts[4]
    h, p = sb2.split(":")
    bsb = Msnp("bob/SB", TcpTransport(h, int(p)))
    t = bsb.next_trid()
    bsb.send("ANS %d bob@example.com %s %s" % (t, bcookie, sid))
    bsb.expect("ANS", trid=t)
    asb.expect("JOI")

    if a.mode == "gateway":
        # The rest of alice's gateway traffic goes over a second TCP connection.
        http.connect()

    t = asb.next_trid()
    asb.send("MSG %d N %d" % (t, len(msg_payload("hello bob"))), msg_payload("hello bob"))
    bsb.expect("MSG")
    t = bsb.next_trid()
    bsb.send("MSG %d N %d" % (t, len(msg_payload("hi alice"))), msg_payload("hi alice"))
    asb.expect("MSG")

    asb.send("OUT")
    asb.drain(0.5)
    bsb.expect("BYE")
    bsb.send("OUT")
    bsb.drain(0.3)
    alice.send("OUT")
    alice.drain(0.5)
    bob.drain(0.5)
    bob.send("OUT")
    bob.drain(0.3)
    for x in (alice, asb, bob, bsb):
        x.t.close()
    http.close()
    if a.mode == "gateway":
        log("gateway: %d HTTP connections, %d+%d polls" % (http.connections, ns_t.polls, sb_t.polls))
    log("done")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the recording script must say why it stopped
        log("FAILED: %r" % e)
        sys.exit(1)
