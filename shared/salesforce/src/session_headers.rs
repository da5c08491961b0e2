//! The current session as the headers of Salesforce APIs outside REST: the Pub/Sub API
//! (gRPC) authenticates every call with `accesstoken`, `instanceurl` and `tenantid`
//! (`pubsub_api.proto`, comment on `service PubSub`).

use std::fmt;

use crate::client::Client;
use crate::error::Error;

/// A session's token, instance URL and org id. Debug output leaves the token out.
#[derive(Clone)]
pub struct SessionHeaders {
    pub access_token: String,
    pub instance_url: String,
    /// The org id (`00D…`), the Pub/Sub API's `tenantid`.
    pub org_id: String,
}

impl fmt::Debug for SessionHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHeaders")
            .field("instance_url", &self.instance_url)
            .field("org_id", &self.org_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The current session (a token is requested first if there is none). A session id
    /// begins with the 15-character id of its org followed by `!`, which gives `org_id`.
    pub async fn session_headers(&self) -> Result<SessionHeaders, Error> {
        let session = self.session().await?;
        let org_id = session
            .access_token
            .split_once('!')
            .map(|(org, _)| org)
            .filter(|org| org.starts_with("00D") && (org.len() == 15 || org.len() == 18))
            .ok_or_else(|| Error::Auth {
                message: "the access token does not begin with an org id (00D…!): the Pub/Sub \
                          API's tenantid cannot be named"
                    .into(),
            })?;
        Ok(SessionHeaders {
            org_id: org_id.to_string(),
            access_token: session.access_token.clone(),
            instance_url: session.instance_url.clone(),
        })
    }
}
