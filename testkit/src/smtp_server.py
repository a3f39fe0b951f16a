"""A mail server for Gantry's tests: aiosmtpd (PyPI), the real SMTP
protocol, keeping each mail it accepts as a JSON line in a file.

Arguments: PORT OUT_FILE [--login USER:PASSWORD] [--starttls CERT KEY]
[--refuse ADDRESS] [--busy N]. --refuse answers 550 to that recipient;
--busy answers 451 to the first N mails.
"""
import json
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out = int(sys.argv[1]), sys.argv[2]
args = sys.argv[3:]
login = None
tls = None
refused = set()
busy = [0]
while args:
    flag = args.pop(0)
    if flag == "--login":
        login = args.pop(0).split(":", 1)
    elif flag == "--starttls":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.pop(0), args.pop(0))
    elif flag == "--refuse":
        refused.add(args.pop(0))
    elif flag == "--busy":
        busy[0] = int(args.pop(0))
    else:
        sys.exit(f"unknown flag {flag}")


class Keep:
    async def handle_RCPT(self, server, session, envelope, address, options):
        if address in refused:
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if busy[0] > 0:
            busy[0] -= 1
            return "451 4.3.0 busy, try again later"
        mail = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "login": who(session.auth_data),
            "tls": session.ssl is not None,
        }
        with open(out, "a") as f:
            f.write(json.dumps(mail) + "\n")
        return "250 2.0.0 accepted"


def who(auth_data):
    if isinstance(auth_data, LoginPassword):
        return auth_data.login.decode()
    if isinstance(auth_data, bytes):
        return auth_data.decode()
    return None


def check(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and login is not None
        and auth_data.login.decode() == login[0]
        and auth_data.password.decode() == login[1]
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


options = {}
if login is not None:
    options.update(authenticator=check, auth_required=True, auth_require_tls=tls is not None)
if tls is not None:
    options.update(tls_context=tls, require_starttls=True)
controller = Controller(Keep(), hostname="127.0.0.1", port=port, **options)
controller.start()
print("listening", flush=True)
threading.Event().wait()
