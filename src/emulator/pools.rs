//! The identity pool operations tests and the quickstart set pools up
//! with: CreateIdentityPool, DescribeIdentityPool, ListIdentityPools,
//! DeleteIdentityPool.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::store::{Pool, Store};
use super::wire::{self, AwsError, invalid};

/// CreateIdentityPool.
pub(super) fn create(store: &mut Store, input: &Value) -> Result<Value, AwsError> {
    let pool = store.create_pool(pool_from(input)?);
    Ok(pool_json(&pool))
}

/// DescribeIdentityPool.
pub(super) fn describe(store: &Store, input: &Value) -> Result<Value, AwsError> {
    let id = wire::string(input, "IdentityPoolId")?
        .ok_or_else(|| invalid("IdentityPoolId is required"))?;
    Ok(pool_json(store.pool(&id)?))
}

/// ListIdentityPools.
pub(super) fn list(store: &Store, input: &Value) -> Result<Value, AwsError> {
    let max =
        wire::integer(input, "MaxResults")?.ok_or_else(|| invalid("MaxResults is required"))?;
    if !(1..=60).contains(&max) {
        return Err(invalid("MaxResults must be 1 to 60"));
    }
    let next = wire::string(input, "NextToken")?;
    let (pools, next) = store.list_pools(next.as_deref(), max as usize);
    let pools: Vec<Value> = pools
        .iter()
        .map(|p| json!({ "IdentityPoolId": p.id, "IdentityPoolName": p.name }))
        .collect();
    let mut reply = json!({ "IdentityPools": pools });
    if let Some(next) = next {
        reply["NextToken"] = json!(next);
    }
    Ok(reply)
}

/// DeleteIdentityPool.
pub(super) fn delete(store: &mut Store, input: &Value) -> Result<Value, AwsError> {
    let id = wire::string(input, "IdentityPoolId")?
        .ok_or_else(|| invalid("IdentityPoolId is required"))?;
    store.delete_pool(&id)?;
    Ok(json!({}))
}

fn pool_from(input: &Value) -> Result<Pool, AwsError> {
    let name = wire::string(input, "IdentityPoolName")?
        .ok_or_else(|| invalid("IdentityPoolName is required"))?;
    let name_ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c.is_whitespace() || "+=,.@-".contains(c));
    if !name_ok {
        return Err(invalid(
            "IdentityPoolName must be 1 to 128 of letters, digits, spaces and +=,.@-_",
        ));
    }
    let allow_unauthenticated = wire::boolean(input, "AllowUnauthenticatedIdentities")?
        .ok_or_else(|| invalid("AllowUnauthenticatedIdentities is required"))?;
    let developer_provider = wire::string(input, "DeveloperProviderName")?;
    if let Some(p) = &developer_provider {
        let ok = (1..=128).contains(&p.chars().count())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(invalid(
                "DeveloperProviderName must be 1 to 128 of letters, digits and ._-",
            ));
        }
    }
    let supported_login_providers: BTreeMap<String, String> =
        wire::map(input, "SupportedLoginProviders")?
            .into_iter()
            .collect();
    if supported_login_providers.len() > 10 {
        return Err(invalid(
            "SupportedLoginProviders must have at most 10 entries",
        ));
    }
    Ok(Pool {
        id: String::new(),
        name,
        allow_unauthenticated,
        developer_provider,
        supported_login_providers,
        tags: wire::map(input, "IdentityPoolTags")?.into_iter().collect(),
    })
}

fn pool_json(pool: &Pool) -> Value {
    let mut value = json!({
        "IdentityPoolId": pool.id,
        "IdentityPoolName": pool.name,
        "AllowUnauthenticatedIdentities": pool.allow_unauthenticated,
        "SupportedLoginProviders": pool.supported_login_providers,
        "IdentityPoolTags": pool.tags,
    });
    if let Some(p) = &pool.developer_provider {
        value["DeveloperProviderName"] = json!(p);
    }
    value
}
