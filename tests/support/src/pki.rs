//! Fresh certificates for one control plane: a CA, the API server's serving certificate, an
//! admin client certificate in `system:masters`, and the service-account signing key.

use std::{net::Ipv4Addr, path::Path};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM files written into the cluster's folder, plus the PEM text the kubeconfig embeds.
pub struct Pki {
    pub ca_cert: String,
    pub admin_cert: String,
    pub admin_key: String,
}

pub const CA_CERT: &str = "ca.crt";
pub const SERVER_CERT: &str = "apiserver.crt";
pub const SERVER_KEY: &str = "apiserver.key";
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";

impl Pki {
    /// Generates everything (ECDSA P-256, as envtest does) and writes it under `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "kfp-test-ca");
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        server_params.subject_alt_names.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
        admin_params.distinguished_name.push(DnType::CommonName, "admin");
        admin_params.distinguished_name.push(DnType::OrganizationName, "system:masters");
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin_params.signed_by(&admin_key, &ca)?;

        let sa_key = KeyPair::generate()?;

        let files = [
            (CA_CERT, ca.pem()),
            (SERVER_CERT, server_cert.pem()),
            (SERVER_KEY, server_key.serialize_pem()),
            (SA_KEY, sa_key.serialize_pem()),
            (SA_PUB, sa_key.public_key_pem()),
        ];
        for (name, pem) in files {
            std::fs::write(dir.join(name), pem).with_context(|| format!("writing {name}"))?;
        }
        Ok(Self { ca_cert: ca.pem(), admin_cert: admin_cert.pem(), admin_key: admin_key.serialize_pem() })
    }
}
