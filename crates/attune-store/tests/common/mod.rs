//! Shared by the store's tests: a fresh PostgreSQL database per test.
#![allow(clippy::unwrap_used, dead_code)]

use sqlx::Connection;

/// A fresh PostgreSQL database; dropped when this goes.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// A new database next to `ATTUNE_TEST_DATABASE_URL`'s (the test fails without it).
    pub async fn new() -> PgDatabase {
        let admin_url = std::env::var("ATTUNE_TEST_DATABASE_URL").expect(
            "ATTUNE_TEST_DATABASE_URL must name a PostgreSQL database to create test databases from (scripts/test sets it)",
        );
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at ATTUNE_TEST_DATABASE_URL is unreachable: {e}")
            });
        let mut rnd = [0u8; 6];
        getrandom(&mut rnd);
        let name = format!(
            "attune_test_{}",
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // Its own runtime: Drop cannot await, and the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::AnyConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}
