"""Reserved addresses, custom domains, catch-all and secret aliases (contract §1.5–1.7)."""

from __future__ import annotations

import smtplib
import uuid

from tests.helpers import ServerHandle, client, deliver, make_message, new_account, unique_inbox

ADDRESS_KEYS = {"_id", "owner", "forward", "enablews", "webhook", "webhookSlack",
                "webhookSlackToFrom", "catchAll", "password", "info", "created", "updated",
                "encryptedInbox", "implicit", "webhookSecret"}


def test_reserve_update_release_cycle(server: ServerHandle) -> None:
    account, key = new_account(server)
    _, other_key = new_account(server)
    address = unique_inbox()
    deliver(server, address, subject="before reservation")
    with client(server, key) as api, client(server, other_key) as other:
        assert api.get(f"/api/addresses/{address}/availability").json() == {
            "available": True, "email": address, "owned": False}
        reserved = api.post(f"/api/addresses/{address}",
                            json={"info": "signup tests", "enablews": True})
        assert reserved.status_code == 200, reserved.text
        body = reserved.json()
        assert set(body) == ADDRESS_KEYS
        assert body["_id"] == address and body["owner"] == account
        assert body["info"] == "signup tests" and body["enablews"] is True
        assert body["encryptedInbox"].startswith("inbox-")
        assert body["encryptedInbox"].endswith("@" + address.split("@")[1])
        # Existing mail became private.
        assert other.get(f"/api/addresses/{address}/messages").status_code == 403
        assert api.get(f"/api/addresses/{address}/message-count").json()["count"] == 1
        # Reserving again: 400 for the owner, 401 for anybody else.
        again = api.post(f"/api/addresses/{address}")
        assert again.status_code == 400 and "already reserved" in again.json()["message"]
        assert other.post(f"/api/addresses/{address}").status_code == 401
        assert other.get(f"/api/addresses/{address}").status_code == 401
        assert api.get(f"/api/addresses/{address}/availability").json()["owned"] is True
        updated = api.put(f"/api/addresses/{address}",
                          json={"webhook": "http://127.0.0.1:9/hook", "info": None})
        assert updated.status_code == 200
        assert updated.json()["webhook"] == "http://127.0.0.1:9/hook"
        assert updated.json()["info"] is None
        assert api.put(f"/api/addresses/{address}", json={"webhook": "ftp://x"}).status_code \
            == 400
        assert other.put(f"/api/addresses/{address}", json={"info": "x"}).status_code == 401
        owned = api.get("/api/addresses").json()
        assert [a["_id"] for a in owned] == [address]
        assert other.delete(f"/api/addresses/{address}").status_code == 401
        released = api.delete(f"/api/addresses/{address}")
        assert released.status_code == 200 and released.json()["_id"] == address
        assert api.delete(f"/api/addresses/{address}").status_code == 400
        # Mail is public again.
        assert other.get(f"/api/addresses/{address}/message-count").json()["count"] == 1


def test_release_with_delete_address_messages(server: ServerHandle) -> None:
    _, key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        assert api.post(f"/api/addresses/{address}").status_code == 200
        deliver(server, address)
        deliver(server, address)
        first = api.get(f"/api/addresses/{address}/messages").json()[0]
        api.put(f"/api/addresses/{address}/messages/{first['_id']}/star")
        released = api.delete(f"/api/addresses/{address}",
                              params={"deleteAddressMessages": "true"})
        assert released.status_code == 200
        assert api.get(f"/api/addresses/{address}/message-count").json()["count"] == 0
        assert api.get(f"/api/raw/{address}/{first['_id']}").status_code == 404


def test_credits_limit_reservations(server: ServerHandle) -> None:
    account = f"tiny-{uuid.uuid4().hex[:8]}"
    with client(server, server.key) as admin:
        assert admin.post("/api/admin/accounts",
                          json={"id": account, "privateAddressCredits": 2}).status_code == 200
        key = admin.post(f"/api/admin/accounts/{account}/keys", json={"name": "k"}).json()["key"]
    with client(server, key) as api:
        too_many = api.post("/api/private-addresses-bulk",
                            json={"addresses": [unique_inbox() for _ in range(3)]})
        assert too_many.status_code == 400
        assert too_many.json()["message"] == "Not enough private address credits"
        assert api.get("/api/addresses").json() == []  # all or nothing
        bulk = api.post("/api/private-addresses-bulk",
                        json={"addresses": [unique_inbox(), unique_inbox()]})
        assert bulk.status_code == 200 and len(bulk.json()) == 2
        assert api.post(f"/api/addresses/{unique_inbox()}").status_code == 400
        assert api.post("/api/private-addresses-bulk", json={"addresses": "x"}).status_code == 400


def test_unreserved_address_view_and_alias_delivery(server: ServerHandle) -> None:
    _, key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        view = api.get(f"/api/addresses/{address}").json()
        assert view["owner"] is None and view["implicit"] is False
        alias = view["encryptedInbox"]
        assert api.get(f"/api/addresses/{address}").json()["encryptedInbox"] == alias
        local = alias.split("@")[0]
        # The alias works at any domain and delivers into the inbox it belongs to.
        deliver(server, f"{local}@elsewhere.test", subject="via alias")
        (message,) = api.get(f"/api/addresses/{address}/messages").json()
        assert message["subject"] == "via alias"
        assert message["originalInbox"] == f"{local}@elsewhere.test"


def test_custom_domain_catch_all_and_reserved_inside_it(server: ServerHandle) -> None:
    account, key = new_account(server)
    _, other_key = new_account(server)
    domain = f"catch-{uuid.uuid4().hex[:8]}.test"
    deliver(server, f"early@{domain}", subject="before the domain was claimed")
    with client(server, server.key) as admin:
        added = admin.post("/api/admin/domains",
                           json={"domain": domain, "account": account, "catchAll": True})
        assert added.status_code == 200, added.text
        assert added.json()["owner"] == account and added.json()["isPrivate"] is True
        taken = admin.post("/api/admin/domains", json={"domain": domain, "account": "default"})
        assert taken.status_code == 403
    with client(server, key) as api, client(server, other_key) as other:
        assert [d["_id"] for d in api.get("/api/domains").json()] == [domain]
        assert other.get("/api/domains").json() == []
        assert other.get(f"/api/addresses/early@{domain}/messages").status_code == 403
        assert api.get(f"/api/addresses/early@{domain}/message-count").json()["count"] == 1
        assert api.post(f"/api/addresses/boss@{domain}").status_code == 200
        assert other.post(f"/api/addresses/x@{domain}").status_code == 401
        with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
            smtp.sendmail("a@example.org", [f"anyone@{domain}"],
                          make_message(f"anyone@{domain}", subject="to catch-all"))
            smtp.sendmail("a@example.org", [f"boss@{domain}"],
                          make_message(f"boss@{domain}", subject="to reserved"))
        caught = api.get(f"/api/addresses/*@{domain}/messages").json()
        assert [m["subject"] for m in caught] == ["to catch-all"]
        assert caught[0]["originalInbox"] == f"anyone@{domain}"
        boss = api.get(f"/api/addresses/boss@{domain}/messages").json()
        assert [m["subject"] for m in boss] == ["to reserved"]  # stored only there
        implicit = api.get(f"/api/addresses/someone@{domain}").json()
        assert implicit["implicit"] is True and implicit["owner"] == account
        listed = api.get(f"/api/domains/{domain}/messages").json()
        assert {m["subject"] for m in listed} >= {"to catch-all", "to reserved"}
        assert other.get(f"/api/domains/{domain}/messages").status_code == 403
        assert other.post(f"/api/domains/{domain}/delete-all-domain-mail").status_code == 403
        assert api.post(f"/api/domains/{domain}/delete-all-domain-mail").status_code == 204
        assert api.get(f"/api/domains/{domain}/messages").json() == []


def test_domain_routes_read_the_domain_one_way(server: ServerHandle) -> None:
    account, key = new_account(server)
    domain = f"one-way-{uuid.uuid4().hex[:8]}.test"
    with client(server, server.key) as admin:
        assert admin.post("/api/admin/domains", json={
            "domain": domain, "account": account, "catchAll": True}).status_code == 200
    deliver(server, f"anyone@{domain}", subject="spelled any way")
    with client(server, key) as api:
        for spelling in (domain.upper(), domain + "."):  # case and a trailing dot
            listed = api.get(f"/api/domains/{spelling}/messages")
            assert [m["subject"] for m in listed.json()] == ["spelled any way"], spelling
            waited = api.get(f"/api/domains/{spelling}/messages/wait",
                             params={"timeout": 5, "since": "2000-01-01T00:00:00Z"})
            assert waited.status_code == 200 and waited.json()["subject"] == "spelled any way"
        for bad, reason in (("no_dots", "at least one dot"), ("a..b.test", "invalid domain label"),
                            ("x@" + domain, "without a name and @")):
            for response in (api.get(f"/api/domains/{bad}/messages"),
                             api.get(f"/api/domains/{bad}/messages/wait",
                                     params={"timeout": 0}),
                             api.post(f"/api/domains/{bad}/delete-all-domain-mail"),
                             api.get(f"/api/domains/{bad}/chaos")):
                assert response.status_code == 400, (bad, response.text)
                body = response.json()
                assert body["error"] == "Bad Request" and reason in body["message"], body
        assert api.get(f"/api/domains/{domain}/messages").status_code == 200


def test_malformed_webhook_urls_are_400(server: ServerHandle) -> None:
    _, key = new_account(server)
    address = unique_inbox()
    with client(server, key) as api:
        api.post(f"/api/addresses/{address}")
        for url in ("https://M[0", "ftp://x.test/", "https://", "not a url", "http:///x"):
            response = api.put(f"/api/addresses/{address}", json={"webhook": url})
            assert response.status_code == 400, url
            assert "http(s) URL" in response.json()["message"]
