//! How far a Redis that refuses PING with `LOADING` is with its load. The check's own client
//! cannot ask: fred PINGs while it connects (without credentials), that PING is refused, and
//! the connection is never made. So while the checks read `LOADING`, each asks `INFO
//! persistence` over a connection of its own that fred opens without a PING (a credential
//! provider makes it `AUTH` instead, skipped without a password; INFO answers during a load),
//! then closes. One short connection per check, only while Redis loads.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{Builder, ClientLike};

use crate::credentials::{sentinels_of, Credentials, Secret};
use crate::health::Failure;
use crate::info::Info;

/// A connection refused with `LOADING`, with how far the load is when `ask` (the state checks
/// may ask INFO); any other failure as it is.
pub async fn explain(
    failure: Failure,
    ask: bool,
    client_config: &fred::prelude::Config,
    budget: Duration,
) -> Failure {
    match failure {
        Failure::Error(reason) if ask && reason.starts_with("LOADING") => {
            match progress(client_config, budget).await {
                Some(progress) => Failure::Error(format!("{reason} ({progress})")),
                None => Failure::Error(reason),
            }
        }
        other => other,
    }
}

/// `47.3% loaded, about 12 s left by its estimate`, or `None` when Redis did not say.
async fn progress(client_config: &fred::prelude::Config, budget: Duration) -> Option<String> {
    let mut config = client_config.clone();
    config.fail_fast = true;
    if config.credential_provider.is_none() {
        // The URL's own credentials, and behind Sentinel the Sentinels' apart (a provider
        // takes precedence over both).
        let data = Secret::Fixed {
            username: config.username.clone(),
            password: config.password.clone(),
        };
        let sentinels = sentinels_of(&config.server)
            .map(|(nodes, username, password)| (nodes, Secret::Fixed { username, password }));
        config.credential_provider = Some(Arc::new(Credentials { data, sentinels }));
    }
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = budget;
            c.internal_command_timeout = budget;
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = budget;
            p.broadcast_channel_capacity = 1;
        })
        .build()
        .ok()?;
    let asked = tokio::time::timeout(budget, async {
        let _connecting = client.init().await.ok()?;
        client
            .info::<String>(Some(fred::types::InfoKind::Persistence))
            .await
            .ok()
    })
    .await
    .ok()
    .flatten();
    let _ = tokio::time::timeout(budget, client.quit()).await;
    Info::parse(&asked?).loading?.describe()
}
