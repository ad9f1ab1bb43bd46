//! `weft bench --tls`: a throwaway CA and server certificate, written to a
//! temporary directory for the child server and removed with it.

use crate::Failed;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::PathBuf;
use weft_tokio::tls::{ClientTls, RootCerts};

/// The certificate files and the CA that signed them.
pub struct Throwaway {
    dir: PathBuf,
    cert: String,
    key: String,
    ca_pem: String,
}

fn failed(e: impl std::fmt::Display) -> Failed {
    Failed(format!("making a throwaway certificate: {e}"))
}

impl Throwaway {
    /// A CA and a certificate for 127.0.0.1 and localhost it signed.
    pub fn new() -> Result<Throwaway, Failed> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "weft bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().map_err(failed)?;
        let ca = ca_params.self_signed(&ca_key).map_err(failed)?;
        let params =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).map_err(failed)?;
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(failed)?;
        // A directory of our own, made fresh (not one someone else made
        // at a name they could guess) and readable by us alone: the key is
        // a throwaway, but a key all the same.
        let dir = std::env::temp_dir().join(format!(
            "weft-bench-tls-{}-{:016x}",
            std::process::id(),
            std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), std::process::id())
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(failed)?;
        }
        let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&cert_path, cert.pem()).map_err(failed)?;
        std::fs::write(&key_path, key.serialize_pem()).map_err(failed)?;
        Ok(Throwaway {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
            dir,
            ca_pem: ca.pem(),
        })
    }

    /// The server certificate's path.
    pub fn cert_path(&self) -> &str {
        &self.cert
    }

    /// Its key's path.
    pub fn key_path(&self) -> &str {
        &self.key
    }

    /// Client settings that trust the CA.
    pub fn client(&self) -> Result<ClientTls, Failed> {
        let roots = RootCerts::from_pem(&self.ca_pem).map_err(failed)?;
        ClientTls::new(&roots, None).map_err(failed)
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
