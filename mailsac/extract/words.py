"""Multilingual cue words for code and link extraction, compiled into search patterns.

Cue words are found with an Aho-Corasick automaton (``ahocorasick-rs``): one linear pass
over a text finds every word of every list, whatever the number of words (a regular
expression alternation of a few hundred words costs ~60 ns per character in CPython).

Languages: English, German, French, Spanish, Portuguese, Italian, Dutch, Polish,
Russian, Chinese, Japanese and Korean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ahocorasick_rs import AhoCorasick, MatchKind

__all__ = [
    "ACTION_KINDS",
    "CODE_CUES",
    "LINK_CUES",
    "NEGATIVE_CUES",
    "UNIT_AFTER",
    "Matcher",
    "lowered",
]

# Short Latin stems that must stand alone (so "pin" does not match "shipping").
_CODE_WORDS = (
    "pin", "otp", "tan", "2fa", "mfa", "kod", "kodu", "kodem", "код", "кода", "clave",
    "token", "senha", "hasło", "haslo", "пароль",
)
# Stems matched anywhere (compounds: "Bestätigungscode", "verificatiecode").
_CODE_STEMS = (
    # en
    "code", "passcode", "one-time", "one time", "verification", "verify", "security code",
    "two-factor", "authenticat", "sign-in code", "login code",
    # de
    "einmalpasswort", "einmal-passwort", "kennwort", "bestätigung", "verifizierung",
    "sicherheits",
    # fr
    "vérification", "mot de passe", "usage unique", "confirmation",
    # es / pt
    "código", "codigo", "verificación", "verificacion", "contraseña", "un solo uso",
    "verificação", "verificacao", "uso único",
    # it
    "codice", "verifica", "monouso",
    # nl
    "verificatie", "wachtwoord", "eenmalig",
    # pl
    "weryfikac", "jednorazow",
    # ru
    "подтвержд", "проверочн", "одноразов",
    # zh
    "验证码", "驗證碼", "校验码", "动态码", "验证", "驗證", "动态密码", "密码", "確認碼", "认证码",
    # ja
    "認証コード", "確認コード", "コード", "ワンタイム", "パスコード", "暗証番号", "認証番号",
    "確認番号", "認証",
    # ko
    "인증번호", "인증 번호", "인증코드", "인증 코드", "코드", "보안", "비밀번호", "인증",
)
# Words that label a number as something else than a code.
_NEGATIVE_WORDS = (
    "tel", "fax", "ref", "no", "nr", "zip", "plz", "cp", "apt", "po", "sku", "qty", "vat",
    "tax", "box", "id", "iva", "btw", "nip", "inn", "ust", "cvc",
)
_NEGATIVE_STEMS = (
    # en
    "order", "invoice", "receipt", "tracking", "track", "shipment", "parcel", "package",
    "customer", "account number", "acct", "member", "ticket", "case", "reference",
    "booking", "reservation", "transaction", "postal", "postcode", "phone", "call ",
    "mobile", "item", "total", "price", "amount", "subtotal", "iban", "card", "ending in",
    "promo", "coupon", "discount", "voucher", "gift", "flight", "seat", "room", "suite",
    "street", "avenue", "floor", "model", "serial", "version", "edition", "issue",
    "policy", "claim", "patient", "loyalty", "points", "whatsapp", "sms to", "contact",
    "hotline", "support", "checkout", "sale", "kontakt", "rabatt", "réduction", "descuento",
    "desconto", "sconto", "korting", "rabat", "скидк", "折扣", "割引", "할인", "문의",
    "問い合わせ", "咨询", "联系", "邮编", "〒", "ул.", "г.", "д.",
    # de
    "bestell", "rechnung", "sendung", "kundennummer", "telefon", "betrag", "summe",
    "gutschein", "auftrag", "straße", "strasse", "artikel", "buchung",
    # fr
    "commande", "facture", "suivi", "colis", "client", "téléphone", "montant", "prix",
    "rue ", "réservation",
    # es / pt
    "pedido", "factura", "seguimiento", "envío", "cliente", "teléfono", "importe", "precio",
    "cupón", "fatura", "rastreamento", "rastreio", "encomenda", "telefone", "valor",
    "preço", "reserva",
    # it
    "ordine", "fattura", "spedizione", "telefono", "importo", "prezzo", "prenotazione",
    # nl
    "bestelling", "factuur", "zending", "klantnummer", "telefoon", "bedrag", "prijs",
    # pl
    "zamówieni", "zamowieni", "faktur", "przesyłk", "przesylk", "kwota", "cena",
    # ru
    "заказ", "счет", "счёт", "трек", "отслежив", "телефон", "сумма", "цена", "посылк",
    # zh
    "订单", "訂單", "发票", "快递", "运单", "电话", "電話", "金额", "价格", "单号",
    # ja
    "注文", "請求", "追跡", "金額", "価格", "お問い合わせ番号",
    # ko
    "주문", "송장", "운송장", "배송", "전화", "금액", "가격",
)
# A number followed by one of these is an amount, a duration or a measurement.
_UNITS = (
    "usd", "eur", "euro", "dollar", "gbp", "chf", "pln", "zł", "zl", "kr", "rub", "руб",
    "yen", "円", "元", "원", "%", "min", "minute", "hour", "hrs", "day", "days", "item",
    "point", "pts", "km", "kg", "mb", "gb", "kb", "ms", "px", "em", "pt", "mi",
    "stunden", "minuten", "tage", "heures", "jours", "minutos", "horas", "días", "dias",
    "minuti", "ore", "giorni", "uur", "dagen", "minut", "godzin", "дн", "мин", "час",
    "分", "时间", "時間", "日", "시간", "분", "일",
)

# Link kinds, strongest first: a link that reads as several gets the first.
ACTION_KINDS = ("unsubscribe", "reset", "verify", "confirm", "login")
_LINK_STEMS: dict[str, tuple[str, ...]] = {
    "unsubscribe": (
        "unsubscribe", "opt-out", "optout", "opt out", "email preferences", "manage preferences",
        "subscription preferences", "abmelden", "abbestellen", "newsletter abbestellen",
        "désabonner", "desabonner", "désinscri", "desinscri", "darse de baja", "darte de baja",
        "cancelar suscripción", "descadastr", "cancelar inscrição", "disiscriv",
        "annulla iscrizione", "afmelden", "uitschrijven", "wypisz", "wypisać", "rezygnac",
        "отписат", "отписк", "退订", "取消订阅", "配信停止", "購読解除", "수신거부", "수신 거부",
        "구독 취소",
    ),
    "reset": (
        "reset", "password", "forgot", "recover", "passwort", "kennwort", "mot de passe",
        "motdepasse", "contraseña", "contrasena", "senha", "wachtwoord", "hasło", "haslo",
        "пароль", "密码", "密碼", "パスワード", "비밀번호", "réinitialiser", "zurücksetzen",
        "restablecer", "redefinir", "reimposta", "herstel", "resetuj", "сброс",
    ),
    "verify": (
        "verify", "verification", "verif", "validate", "validation", "verifizier",
        "vérifi", "verificar", "verifica", "verifiëren", "weryfik", "проверить",
        "验证", "驗證", "認証", "인증",
    ),
    "confirm": (
        "confirm", "activate", "activation", "bestätig", "bestatig", "aktivier", "confirmer",
        "activer", "confirmar", "activar", "ativar", "conferma", "attiva", "bevestig",
        "activeer", "potwierd", "aktywuj", "подтверд", "активир", "确认", "確認", "激活",
        "有効化", "확인", "활성화", "opt-in", "optin", "double opt",
    ),
    "login": (
        "login", "log in", "log-in", "signin", "sign in", "sign-in", "magic", "einloggen",
        "anmelden", "connexion", "se connecter", "iniciar sesión", "iniciar sesion",
        "inicia sesión", "entrar", "acessar", "accedi", "accesso", "inloggen", "zaloguj",
        "logowan", "войти", "вход", "登录", "登入", "ログイン", "로그인", "auth", "session",
    ),
}


def lowered(text: str) -> str:
    """``text`` in lower case, character for character (positions stay valid: the few
    characters whose lower case is longer, such as "İ", keep their first character)."""
    low = text.lower()
    if len(low) != len(text):
        low = "".join(ch.lower()[:1] or ch for ch in text)
    return low


class Matcher:
    """Finds labelled cue words in a lower-cased text in one linear pass (Aho-Corasick).

    ``groups`` maps a label to its words and whether they must stand alone (so "pin"
    does not match inside "shipping"); a word in several groups keeps the first label.
    """

    def __init__(self, groups: dict[str, tuple[Iterable[str], bool]]) -> None:
        patterns: dict[str, tuple[str, bool]] = {}
        for label, (words, whole) in groups.items():
            for word in words:
                patterns.setdefault(word, (label, whole))
        self._patterns = list(patterns)
        self._labels = [patterns[word] for word in self._patterns]
        self._automaton = AhoCorasick(self._patterns, matchkind=MatchKind.LeftmostLongest)

    def find(self, low: str) -> list[tuple[str, int, int]]:
        """``(label, start, end)`` of the non-overlapping cue words of ``low``, in order."""
        found = []
        for index, start, end in self._automaton.find_matches_as_indexes(low):
            label, whole = self._labels[index]
            if whole and ((start > 0 and low[start - 1].isalnum())
                          or (end < len(low) and low[end].isalnum())):
                continue
            found.append((label, start, end))
        return found

    def labels(self, low: str) -> set[str]:
        return {label for label, _, _ in self.find(low)}


CODE_CUES = Matcher({"cue": (_CODE_STEMS, False), "cue ": (_CODE_WORDS, True),
                     "neg": (_NEGATIVE_STEMS, False), "neg ": (_NEGATIVE_WORDS, True)})
UNIT_AFTER = re.compile(
    r"(?:" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![^\W_])")
LINK_CUES = Matcher({kind: (_LINK_STEMS[kind], False) for kind in ACTION_KINDS})
NEGATIVE_CUES = Matcher({"neg": (_NEGATIVE_STEMS, False), "neg ": (_NEGATIVE_WORDS, True)})
