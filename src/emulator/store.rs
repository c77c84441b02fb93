//! The emulator's state and Cognito's rules over it: identity pools, and
//! identities that stay the same for the same pool, provider and user.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::wire::{AwsError, invalid, not_authorized, not_found};
use crate::domain::{Logins, Secret};

/// The provider name under which a Cognito OpenID token is presented.
pub(crate) const COGNITO_PROVIDER: &str = "cognito-identity.amazonaws.com";

/// Namespace of the emulator's stable identity ids (UUID v5 of pool,
/// provider and user): the same user gets the same id, even after a restart.
const IDENTITY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6c0f_1d3e_9a4b_4f5c_8e21_7d3a_5b9c_0e14);

/// An identity pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    /// REGION:GUID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether GetId without logins may create identities.
    pub(crate) allow_unauthenticated: bool,
    /// The developer provider's name ("login.mycompany.myapp").
    pub developer_provider: Option<String>,
    /// Public providers and their app ids ("graph.facebook.com" -> app id).
    pub(crate) supported_login_providers: BTreeMap<String, String>,
    pub(crate) tags: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Identity {
    pool: String,
    /// Provider names of the logins linked to it; empty if unauthenticated.
    providers: BTreeSet<String>,
    /// The developer user identifier last linked to it, which its tokens name.
    developer_user: Option<Secret>,
}

/// An identity a token may be issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The identity id.
    pub identity_id: String,
    /// Its pool.
    pub(crate) pool_id: String,
    /// Provider names it is authenticated with; empty if unauthenticated.
    pub(crate) providers: Vec<String>,
    /// The pool's developer provider and the developer user identifier
    /// linked to the identity, if one is.
    pub(crate) developer_user: Option<(String, Secret)>,
}

/// Which operation is resolving logins: the developer operation takes the
/// pool's developer provider, the public ones must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// GetId, GetOpenIdToken, GetCredentialsForIdentity.
    Public,
    /// GetOpenIdTokenForDeveloperIdentity.
    Developer,
}

/// Pools and identities.
pub(crate) struct Store {
    region: String,
    pools: BTreeMap<String, Pool>,
    identities: HashMap<String, Identity>,
    /// (pool, provider, user) -> identity id.
    links: HashMap<(String, String, String), String>,
}

/// Counts only: the links are keyed by Logins values.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("region", &self.region)
            .field("pools", &self.pools.len())
            .field("identities", &self.identities.len())
            .field("links", &self.links.len())
            .finish()
    }
}

fn logins_dont_match() -> AwsError {
    not_authorized(
        "Logins don't match. Please include at least one valid login for this identity or identity pool.",
    )
}

impl Store {
    /// An empty store for `region`.
    pub(crate) fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            pools: BTreeMap::new(),
            identities: HashMap::new(),
            links: HashMap::new(),
        }
    }

    /// Adds a pool with a fresh id; returns it.
    pub(crate) fn create_pool(&mut self, mut pool: Pool) -> Pool {
        pool.id = format!("{}:{}", self.region, uuid::Uuid::new_v4());
        self.pools.insert(pool.id.clone(), pool.clone());
        pool
    }

    /// Adds a pool with a given id (the quickstart's ready pool).
    pub(crate) fn insert_pool(&mut self, pool: Pool) {
        self.pools.insert(pool.id.clone(), pool);
    }

    /// The pool `id`, or Cognito's ResourceNotFoundException.
    pub(crate) fn pool(&self, id: &str) -> Result<&Pool, AwsError> {
        self.pools
            .get(id)
            .ok_or_else(|| not_found(format!("IdentityPool '{id}' not found.")))
    }

    /// Pools in id order, from after `after`, at most `max`.
    pub(crate) fn list_pools(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> (Vec<&Pool>, Option<String>) {
        let mut pools = self
            .pools
            .values()
            .filter(|p| after.is_none_or(|a| p.id.as_str() > a));
        let page: Vec<&Pool> = pools.by_ref().take(max).collect();
        let next = match (pools.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        (page, next)
    }

    /// Deletes a pool and its identities.
    pub(crate) fn delete_pool(&mut self, id: &str) -> Result<(), AwsError> {
        self.pool(id)?;
        self.pools.remove(id);
        self.identities.retain(|_, i| i.pool != id);
        self.links.retain(|(pool, _, _), _| pool != id);
        Ok(())
    }

    /// The pool of an identity.
    pub(crate) fn identity_pool(&self, identity_id: &str) -> Result<&Pool, AwsError> {
        let identity = self
            .identities
            .get(identity_id)
            .ok_or_else(|| not_found(format!("Identity '{identity_id}' not found.")))?;
        self.pool(&identity.pool)
    }

    /// Checks that every login's provider is one the pool has, and that the
    /// developer operation names the developer provider (once; a map cannot
    /// name it twice) while the public ones do not name it at all.
    fn check_providers(
        &self,
        pool: &Pool,
        logins: &Logins,
        caller: Caller,
    ) -> Result<(), AwsError> {
        let developer = pool.developer_provider.as_deref();
        for provider in logins.map().names() {
            let known = Some(provider) == developer
                || pool.supported_login_providers.contains_key(provider);
            if !known {
                return Err(not_authorized(format!(
                    "Invalid login provider: {provider} is not configured for identity pool {}.",
                    pool.id
                )));
            }
            if caller == Caller::Public && Some(provider) == developer {
                return Err(not_authorized(format!(
                    "{provider} is a developer provider: use GetOpenIdTokenForDeveloperIdentity."
                )));
            }
        }
        if caller == Caller::Developer {
            let Some(developer) = developer else {
                return Err(invalid(format!(
                    "Identity pool {} has no developer provider.",
                    pool.id
                )));
            };
            if logins.map().get(developer).is_none() {
                return Err(invalid(format!(
                    "Logins must include the pool's developer provider {developer}."
                )));
            }
        }
        Ok(())
    }

    /// GetId and the developer operation: finds (or creates) the identity
    /// of `logins` in `pool_id`, linking the logins to `identity_id` when given.
    pub(crate) fn resolve(
        &mut self,
        pool_id: &str,
        identity_id: Option<&str>,
        logins: &Logins,
        caller: Caller,
    ) -> Result<Resolved, AwsError> {
        let pool = self.pool(pool_id)?.clone();
        self.check_providers(&pool, logins, caller)?;
        if logins.map().is_empty() && identity_id.is_none() {
            if !pool.allow_unauthenticated {
                return Err(not_authorized(
                    "Unauthenticated access is not supported for this identity pool.",
                ));
            }
            let id = format!("{}:{}", self.region, uuid::Uuid::new_v4());
            self.identities.insert(
                id.clone(),
                Identity {
                    pool: pool.id.clone(),
                    providers: BTreeSet::new(),
                    developer_user: None,
                },
            );
            return self.identity(&id);
        }
        let target = match identity_id {
            Some(id) => {
                if self.identity_pool(id)?.id != pool.id {
                    return Err(not_found(format!("Identity '{id}' not found.")));
                }
                id.to_owned()
            }
            None => self.identity_for(&pool, logins)?,
        };
        self.link(&pool, &target, logins)?;
        self.identity(&target)
    }

    /// GetOpenIdToken and GetCredentialsForIdentity without a Cognito
    /// token: the identity, authorised by `logins` (which are linked to it).
    pub(crate) fn authorize(
        &mut self,
        identity_id: &str,
        logins: &Logins,
    ) -> Result<Resolved, AwsError> {
        let pool = self.identity_pool(identity_id)?.clone();
        self.check_providers(&pool, logins, Caller::Public)?;
        let authenticated = self
            .identities
            .get(identity_id)
            .is_some_and(|i| !i.providers.is_empty());
        if logins.map().is_empty() {
            if authenticated {
                return Err(logins_dont_match());
            }
            if !pool.allow_unauthenticated {
                return Err(not_authorized(
                    "Unauthenticated access is not supported for this identity pool.",
                ));
            }
        }
        self.link(&pool, identity_id, logins)?;
        self.identity(identity_id)
    }

    /// The identity already linked to one of `logins`, or a new one whose id
    /// derives from the first login, so the same user always gets it.
    fn identity_for(&mut self, pool: &Pool, logins: &Logins) -> Result<String, AwsError> {
        let linked: BTreeSet<&String> = logins
            .map()
            .iter()
            .filter_map(|(provider, user)| {
                self.links.get(&(
                    pool.id.clone(),
                    provider.to_owned(),
                    user.expose().to_owned(),
                ))
            })
            .collect();
        if linked.len() > 1 {
            return Err(AwsError::new(
                "ResourceConflictException",
                "The logins are linked to different identities.",
            ));
        }
        if let Some(id) = linked.into_iter().next() {
            return Ok(id.clone());
        }
        // Prefer the developer login as the identity's origin: it is the one
        // that names the user in the developer flow.
        let (provider, user) = logins
            .map()
            .iter()
            .find(|(p, _)| Some(*p) == pool.developer_provider.as_deref())
            .or_else(|| logins.map().iter().next())
            .ok_or_else(logins_dont_match)?;
        let name = format!("{}\n{provider}\n{}", pool.id, user.expose());
        let id = format!(
            "{}:{}",
            self.region,
            uuid::Uuid::new_v5(&IDENTITY_NAMESPACE, name.as_bytes())
        );
        self.identities
            .entry(id.clone())
            .or_insert_with(|| Identity {
                pool: pool.id.clone(),
                providers: BTreeSet::new(),
                developer_user: None,
            });
        Ok(id)
    }

    /// Links every login to `identity_id`; a login already linked elsewhere
    /// is a conflict (DeveloperUserAlreadyRegisteredException for the
    /// developer provider's users).
    fn link(&mut self, pool: &Pool, identity_id: &str, logins: &Logins) -> Result<(), AwsError> {
        for (provider, user) in logins.map().iter() {
            let key = (
                pool.id.clone(),
                provider.to_owned(),
                user.expose().to_owned(),
            );
            if let Some(existing) = self.links.get(&key)
                && existing != identity_id
            {
                return Err(if Some(provider) == pool.developer_provider.as_deref() {
                    AwsError::new(
                        "DeveloperUserAlreadyRegisteredException",
                        "The developer user is already registered with a different identity.",
                    )
                } else {
                    AwsError::new(
                        "ResourceConflictException",
                        "The login is already linked to a different identity.",
                    )
                });
            }
        }
        for (provider, user) in logins.map().iter() {
            self.links.insert(
                (
                    pool.id.clone(),
                    provider.to_owned(),
                    user.expose().to_owned(),
                ),
                identity_id.to_owned(),
            );
            if let Some(identity) = self.identities.get_mut(identity_id) {
                identity.providers.insert(provider.to_owned());
                if Some(provider) == pool.developer_provider.as_deref() {
                    identity.developer_user = Some(user.clone());
                }
            }
        }
        Ok(())
    }

    /// An identity as its tokens describe it.
    pub(crate) fn identity(&self, identity_id: &str) -> Result<Resolved, AwsError> {
        let identity = self
            .identities
            .get(identity_id)
            .ok_or_else(|| not_found(format!("Identity '{identity_id}' not found.")))?;
        let developer_user = self
            .pool(&identity.pool)?
            .developer_provider
            .clone()
            .zip(identity.developer_user.clone());
        Ok(Resolved {
            identity_id: identity_id.to_owned(),
            pool_id: identity.pool.clone(),
            providers: identity.providers.iter().cloned().collect(),
            developer_user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_pool(allow_unauthenticated: bool) -> (Store, String) {
        let mut store = Store::new("us-east-1");
        let pool = store.create_pool(Pool {
            id: String::new(),
            name: "p".into(),
            allow_unauthenticated,
            developer_provider: Some("login.example".into()),
            supported_login_providers: BTreeMap::from([(
                "graph.facebook.com".into(),
                "app".into(),
            )]),
            tags: BTreeMap::new(),
        });
        (store, pool.id)
    }

    fn logins(entries: &[(&str, &str)]) -> Logins {
        Logins::parse(entries.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    /// The developer operation for `user`, with an optional identity.
    fn developer(
        store: &mut Store,
        pool: &str,
        identity: Option<&str>,
        user: &str,
    ) -> Result<Resolved, AwsError> {
        store.resolve(
            pool,
            identity,
            &logins(&[("login.example", user)]),
            Caller::Developer,
        )
    }

    #[test]
    fn the_same_user_gets_the_same_identity() {
        let (mut store, pool) = store_with_pool(false);
        let a = developer(&mut store, &pool, None, "u1").unwrap();
        let b = developer(&mut store, &pool, None, "u1").unwrap();
        let c = developer(&mut store, &pool, None, "u2").unwrap();
        assert_eq!(a.identity_id, b.identity_id);
        assert_ne!(a.identity_id, c.identity_id);
        assert!(a.identity_id.starts_with("us-east-1:"));
        assert_eq!(a.providers, ["login.example"]);
        assert_eq!(
            a.developer_user,
            Some(("login.example".to_owned(), Secret::new("u1")))
        );
        assert!(!format!("{store:?}").contains("u1"), "Debug shows no login");
        // A new store (a restart) gives the same id for the same pool id.
        let mut again = Store::new("us-east-1");
        again.insert_pool(store.pool(&pool).unwrap().clone());
        let d = developer(&mut again, &pool, None, "u1").unwrap();
        assert_eq!(a.identity_id, d.identity_id);
    }

    #[test]
    fn linking_and_conflicts() {
        let (mut store, pool) = store_with_pool(true);
        let anon = store
            .resolve(&pool, None, &Logins::default(), Caller::Public)
            .unwrap();
        assert!(anon.providers.is_empty());
        let linked = developer(&mut store, &pool, Some(&anon.identity_id), "u1").unwrap();
        assert_eq!(linked.identity_id, anon.identity_id);
        // u1 now resolves to the linked identity.
        let again = developer(&mut store, &pool, None, "u1").unwrap();
        assert_eq!(again.identity_id, anon.identity_id);
        // Linking u1 to another identity is refused.
        let other = store
            .resolve(&pool, None, &Logins::default(), Caller::Public)
            .unwrap();
        let err = developer(&mut store, &pool, Some(&other.identity_id), "u1").unwrap_err();
        assert_eq!(err.code, "DeveloperUserAlreadyRegisteredException");
    }

    #[test]
    fn providers_are_checked() {
        let (mut store, pool) = store_with_pool(false);
        let mut refused = |entries: &[(&str, &str)], caller| {
            store
                .resolve(&pool, None, &logins(entries), caller)
                .unwrap_err()
        };
        let unknown = refused(&[("unknown.example", "x")], Caller::Public);
        assert_eq!(unknown.code, "NotAuthorizedException");
        let developer_on_public = refused(&[("login.example", "x")], Caller::Public);
        assert_eq!(developer_on_public.code, "NotAuthorizedException");
        let no_developer = refused(&[("graph.facebook.com", "x")], Caller::Developer);
        assert_eq!(no_developer.code, "InvalidParameterException");
        let unauthenticated = refused(&[], Caller::Public);
        assert_eq!(unauthenticated.code, "NotAuthorizedException");
        assert!(unauthenticated.message.contains("Unauthenticated"));
    }

    #[test]
    fn authenticated_identities_need_their_logins() {
        let (mut store, pool) = store_with_pool(true);
        let id = store
            .resolve(
                &pool,
                None,
                &logins(&[("graph.facebook.com", "fb-token")]),
                Caller::Public,
            )
            .unwrap();
        assert_eq!(
            store
                .authorize(&id.identity_id, &Logins::default())
                .unwrap_err()
                .code,
            "NotAuthorizedException"
        );
        assert!(
            store
                .authorize(
                    &id.identity_id,
                    &logins(&[("graph.facebook.com", "fb-token")])
                )
                .is_ok()
        );
        assert_eq!(
            store
                .authorize("us-east-1:0000", &Logins::default())
                .unwrap_err()
                .code,
            "ResourceNotFoundException"
        );
    }

    #[test]
    fn pools_list_in_pages_and_delete() {
        let (mut store, first) = store_with_pool(true);
        let (_, _) = (store.create_pool(store.pool(&first).unwrap().clone()), ());
        let (page, next) = store.list_pools(None, 1);
        assert_eq!(page.len(), 1);
        let (rest, end) = store.list_pools(next.as_deref(), 10);
        assert_eq!((rest.len(), end), (1, None));
        store.delete_pool(&first).unwrap();
        assert_eq!(
            store.pool(&first).unwrap_err().code,
            "ResourceNotFoundException"
        );
    }
}
