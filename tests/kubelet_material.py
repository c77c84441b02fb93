"""Test material for the Secrets a chart mounts but others make: a test CA,
the Secret cert-manager would write for a Certificate, and a caller's
certificate. For tests/kubelet_view.py."""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Material:
    """The test CA, and what it signs: a cert-manager Secret's files, and a
    client certificate."""

    def __init__(self, directory):
        """The CA in `directory`, made there the first time."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "ca.key").exists():
            self.key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
            self.ca_pem = (directory / "ca.crt").read_bytes()
            self.cert = x509.load_pem_x509_certificate(self.ca_pem)
            self.name = self.cert.subject
            return
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelet-view test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.name = name
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        (directory / "ca.crt").write_bytes(self.ca_pem)
        # Kept for renewals (renew-tls); a test CA's, and nothing else's.
        (directory / "ca.key").write_bytes(pkcs8(self.key))

    def sign(self, public_key, dns_names, uris, duration, server, client):
        now = datetime.datetime.now(datetime.timezone.utc)
        names = [x509.DNSName(n) for n in dns_names]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        # cert-manager leaves the subject empty unless asked, and then
        # marks the SANs critical (RFC 5280, 4.2.1.6).
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + duration)
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def certificate_secret(self, certificate):
        """The Secret cert-manager would write for `certificate`."""
        spec = certificate["spec"]
        key_spec = spec.get("privateKey", {})
        algorithm = key_spec.get("algorithm", "RSA")
        size = key_spec.get("size")
        if algorithm == "ECDSA":
            curve = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}[size or 256]
            key = ec.generate_private_key(curve())
        elif algorithm == "RSA":
            key = rsa.generate_private_key(public_exponent=65537, key_size=size or 2048)
        elif algorithm == "Ed25519":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise SystemExit(
                f"Certificate {certificate['metadata']['name']}: private key algorithm {algorithm}"
            )
        # cert-manager's default encoding, PKCS1: SEC1 for ECDSA keys, PKCS#1
        # for RSA ones; Ed25519 keys exist only as PKCS#8.
        if key_spec.get("encoding", "PKCS1") == "PKCS8" or algorithm == "Ed25519":
            key_pem = pkcs8(key)
        else:
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        usages = spec.get("usages", ["digital signature", "key encipherment"])
        cert = self.sign(
            key.public_key(), spec.get("dnsNames", []), spec.get("uris", []),
            parse_duration(spec.get("duration", "2160h")),
            server="server auth" in usages, client="client auth" in usages,
        )
        return {
            "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
            "tls.key": key_pem,
            "ca.crt": self.ca_pem,
        }

    def client(self, uri):
        """A caller's certificate and key, in material/client.{crt,key}."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign(
            key.public_key(), [], [uri], datetime.timedelta(hours=1), server=False, client=True
        )
        (self.directory / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.directory / "client.key").write_bytes(pkcs8(key))


def pkcs8(key):
    """A private key in PEM, PKCS#8, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def parse_duration(text):
    """A Go duration of hours, minutes and seconds (cert-manager's)."""
    total, number = 0.0, ""
    for c in text:
        if c.isdigit() or c == ".":
            number += c
        else:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[c]
            number = ""
    return datetime.timedelta(seconds=total)
