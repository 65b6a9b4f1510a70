"""`tandem.models.pem`: the checks of a certificate chain and its key, and what a leaf shows (and the
`Certificate` model that uses them)."""

from datetime import UTC, datetime, timedelta

import pytest

from pki import TestCA
from tandem.models import Certificate, pem


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def test_a_chain_and_its_key_pass_and_the_leaf_shows_its_names(ca):
    issued = ca.issue("www.example.com", "www.example.com", "*.example.com")
    chain = pem.load_chain(issued.chain)
    assert len(chain) == 2
    pem.check_key(issued.key, chain[0])
    info = pem.info(chain[0])
    assert info.subjects == ("www.example.com", "*.example.com")
    assert info.fingerprint == issued.fingerprint
    assert info.not_after == issued.not_after.replace(microsecond=0)
    shown = info.shown(datetime.now(UTC))
    assert shown.status == "valid" and shown.not_after.endswith("Z")
    assert pem.chain_info(issued.leaf) == info


def test_an_rsa_key_passes(ca):
    issued = ca.issue("rsa.example.com", rsa_key=True)
    pem.check_key(issued.key, pem.load_chain(issued.chain)[0])


def test_status_by_time(ca):
    info = pem.chain_info(ca.issue("t.example.com", days=100).chain)
    now = datetime.now(UTC)
    assert info.status(now) == "valid"
    assert info.status(info.not_after - timedelta(days=29)) == "expiring"
    assert info.status(info.not_after) == "expired"
    assert info.status(now + timedelta(days=200)) == "expired"


@pytest.mark.parametrize("text", [
    "", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
])
def test_invalid_pem_is_refused(text):
    with pytest.raises(ValueError, match=r"^certificate: "):
        pem.load_chain(text)


def test_a_key_inside_the_certificate_field_is_refused(ca):
    issued = ca.issue("k.example.com")
    with pytest.raises(ValueError, match=r"^certificate: must hold only PEM CERTIFICATE blocks") as refused:
        pem.load_chain(issued.chain + issued.key)
    assert "PRIVATE" not in str(refused.value).split("(")[0]


def test_a_chain_out_of_order_is_refused(ca):
    issued = ca.issue("o.example.com")
    with pytest.raises(ValueError, match="is not issued by the next one"):
        pem.load_chain(ca.pem + issued.leaf)
    other = TestCA("Another CA")
    with pytest.raises(ValueError, match="certificate 0 of the chain"):
        pem.load_chain(issued.leaf + other.pem)


def test_a_key_that_does_not_match_and_bad_keys_are_refused_without_quoting_them(ca):
    issued, other = ca.issue("a.example.com"), ca.issue("b.example.com")
    leaf = pem.load_chain(issued.chain)[0]
    lines = issued.key.splitlines()
    broken = "\n".join([lines[0], lines[1][:10], *lines[2:]])
    for key, message in [(other.key, "does not match the certificate"),
                         (broken, "not a valid unencrypted PEM private key"),
                         ("garbage", "must be one unencrypted PEM private key"),
                         (issued.key + other.key, "must be one unencrypted PEM private key"),
                         (issued.leaf, "must be one unencrypted PEM private key")]:
        with pytest.raises(ValueError, match=message) as refused:
            pem.check_key(key, leaf)
        assert str(refused.value).startswith("key: ")
        assert key.splitlines()[-1] not in str(refused.value) and "MII" not in str(refused.value)


def test_expired_and_not_yet_valid_certificates_are_refused(ca):
    pem.check_validity(pem.chain_info(ca.issue("ok.example.com").chain))
    with pytest.raises(ValueError, match=r"^certificate: expired on .*Z$"):
        pem.check_validity(pem.chain_info(ca.issue("old.example.com", days=-1, starts=-10).chain))
    with pytest.raises(ValueError, match=r"^certificate: not valid before .*Z$"):
        pem.check_validity(pem.chain_info(ca.issue("new.example.com", days=30, starts=2).chain))


def test_the_model_shows_what_reads_add_and_documents_the_key_write_only(ca):
    issued = ca.issue("m.example.com")
    model = Certificate(name="m", certificate=issued.chain, key=issued.key)
    assert model.fingerprint == issued.fingerprint and model.status == "valid"
    assert model.subjects == ["m.example.com"]
    request = Certificate.model_json_schema(mode="validation")
    answer = Certificate.model_json_schema(mode="serialization")
    assert "status" not in request["properties"] and answer["properties"]["status"]["readOnly"]
    assert answer["properties"]["key"]["writeOnly"]
