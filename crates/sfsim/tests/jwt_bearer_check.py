"""The JWT bearer flow as an integration signs in with it: an RSA key and a self-signed
certificate made with `cryptography`, the certificate uploaded to the connected app
(sfsim's control API standing in for Setup), an RS256 assertion signed with PyJWT,
exchanged for an access token that simple-salesforce then uses."""
import datetime
import os
import time

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from simple_salesforce import Salesforce

instance = os.environ["SFSIM_URL"]
ca = os.environ["SFSIM_CA"]
client_id = os.environ["SFSIM_CLIENT_ID"]


def key_and_certificate():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tripline-integration")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


def assertion(key, subject, audience="https://login.salesforce.com", expires_in=180, issuer=client_id):
    claims = {"iss": issuer, "sub": subject, "aud": audience, "exp": int(time.time()) + expires_in}
    return jwt.encode(claims, key, algorithm="RS256")


def token(signed):
    r = requests.post(instance + "/services/oauth2/token", verify=ca,
                      data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": signed})
    return r.status_code, r.json()


key, certificate = key_and_certificate()
upload = requests.post(os.environ["SFSIM_CONTROL"] + "/connected-app/certificate", json={"pem": certificate})
assert upload.status_code == 200, upload.text

status, body = token(assertion(key, os.environ["SFSIM_USERNAME"]))
assert status == 200, body
assert body["token_type"] == "Bearer" and body["instance_url"] == instance and "refresh_token" not in body, body
session = requests.Session()
session.verify = ca
sf = Salesforce(instance_url=body["instance_url"], session_id=body["access_token"], session=session, version="62.0")
me = sf.query("SELECT Username FROM User WHERE Username = '%s'" % os.environ["SFSIM_USERNAME"])
assert me["totalSize"] == 1, me

other_key, _ = key_and_certificate()
cases = [
    (assertion(other_key, os.environ["SFSIM_USERNAME"]), "invalid_grant", "invalid assertion"),
    (assertion(key, os.environ["SFSIM_USERNAME"], audience="https://example.com"), "invalid_grant", "audience is invalid"),
    (assertion(key, os.environ["SFSIM_USERNAME"], expires_in=-60), "invalid_grant", "expired authorization code"),
    (assertion(key, os.environ["SFSIM_USERNAME"], issuer="not-the-app"), "invalid_client_id", "client identifier invalid"),
    (assertion(key, os.environ["SFSIM_OTHER_USERNAME"]), "invalid_grant", "user hasn't approved this consumer"),
]
for signed, error, description in cases:
    status, body = token(signed)
    assert status == 400 and body == {"error": error, "error_description": description}, (error, body)
print("ok")
