//! Registered packs and their actions, in memory, loaded from the store's pack bundles
//! (unpacked once into a content-addressed cache directory).

use attune_core::bundle::Bundle;
use attune_core::{Action, Pack};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A pack that passed validation, with its actions.
#[derive(Debug, Clone)]
pub struct LoadedPack {
    /// Metadata.
    pub pack: Pack,
    /// Content digest.
    pub digest: String,
    /// Registration time.
    pub registered_at: String,
    /// Actions by name.
    pub actions: BTreeMap<String, Arc<Action>>,
}

/// All registered packs.
#[derive(Debug)]
pub struct Catalog {
    cache: PathBuf,
    packs: RwLock<BTreeMap<String, LoadedPack>>,
}

impl Catalog {
    /// An empty catalog whose packs unpack under `cache`.
    pub fn new(cache: PathBuf) -> Catalog {
        Catalog {
            cache,
            packs: RwLock::new(BTreeMap::new()),
        }
    }

    /// Unpacks and fully validates a bundle, as registration does. Errors name the file and
    /// key, relative to the pack.
    pub fn load(
        &self,
        bundle: &Bundle,
        digest: &str,
        registered_at: &str,
    ) -> Result<LoadedPack, String> {
        let dir = self.cache.join(digest);
        if !dir.join("pack.yaml").is_file() {
            bundle.unpack_to(&dir).map_err(|e| e.to_string())?;
        }
        let relative = |msg: String| msg.replace(&format!("{}/", dir.display()), "");
        let pack = Pack::open(&dir).map_err(|e| relative(e.to_string()))?;
        let actions = pack.load_actions().map_err(|e| relative(e.to_string()))?;
        Ok(LoadedPack {
            digest: digest.to_string(),
            registered_at: registered_at.to_string(),
            actions: actions
                .into_iter()
                .map(|a| (a.name.clone(), Arc::new(a)))
                .collect(),
            pack,
        })
    }

    /// Adds or replaces a pack.
    pub fn insert(&self, p: LoadedPack) {
        if let Ok(mut packs) = self.packs.write() {
            packs.insert(p.pack.pack_ref.clone(), p);
        }
    }

    /// Removes a pack.
    pub fn remove(&self, pack_ref: &str) -> bool {
        self.packs
            .write()
            .map(|mut p| p.remove(pack_ref).is_some())
            .unwrap_or(false)
    }

    /// The action `<pack>.<name>`.
    pub fn action(&self, action_ref: &str) -> Option<Arc<Action>> {
        let (pack, name) = action_ref.split_once('.')?;
        self.packs
            .read()
            .ok()?
            .get(pack)?
            .actions
            .get(name)
            .cloned()
    }

    /// Every action, by ref.
    pub fn actions(&self) -> Vec<Arc<Action>> {
        self.packs
            .read()
            .map(|p| {
                p.values()
                    .flat_map(|lp| lp.actions.values().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every pack.
    pub fn packs(&self) -> Vec<LoadedPack> {
        self.packs
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }
}
