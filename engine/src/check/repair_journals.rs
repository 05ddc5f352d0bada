//! `repair` for the finished-offsets journals: what [`super::journal::examine`] finds, fixed
//! the way nsqd's open would fix it, so the channel opens with the same cursor state.

use super::journal::{self, Fix};
use super::layout::TopicFiles;
use super::repair::Repairer;
use crate::cursor::{CursorFile, CursorState};
use crate::error::{IoContext, Result};
use crate::fin_journal;
use std::path::Path;

impl Repairer<'_> {
    /// Carries out `fixes`, saying for each what it fixes (the details of the issues found
    /// in that file, given with its first fix).
    fn carry_out(&mut self, examined: journal::Examined) -> Result<()> {
        let mut explained = Vec::new();
        for fix in &examined.fixes {
            let path = fix.path().to_path_buf();
            let verb = match fix {
                Fix::Remove(_) => "removed".to_string(),
                Fix::Truncate(_, len) => format!("cut to its last whole entry ({len} bytes)"),
                Fix::Rewrite(..) => "rewrote it with only the entries that still count \
                     (a dropped FIN means a redelivery, never a loss)"
                    .to_string(),
                Fix::RenameOver(_, to) => format!(
                    "renamed over {} (finishing the compaction)",
                    to.file_name().map_or("".into(), |n| n.to_string_lossy())
                ),
            };
            let why: Vec<&str> = if explained.contains(&path) {
                Vec::new()
            } else {
                examined
                    .issues
                    .iter()
                    .filter(|i| i.path == path)
                    .map(|i| i.detail.as_str())
                    .collect()
            };
            let what = if why.is_empty() {
                verb
            } else {
                format!("{verb}: {}", why.join("; "))
            };
            self.act(&path, what);
            explained.push(path.clone());
            if !self.dry_run {
                fix.apply(self.fs).at(&path)?;
            }
        }
        Ok(())
    }

    /// Fixes the journals of a sound cursor file (`cursor`, at `path`) for a log ending at `end`.
    pub(super) fn journals(&mut self, path: &Path, cursor: &CursorFile, end: u64) -> Result<()> {
        let examined = journal::examine(self.fs, path, cursor, end).at(path)?;
        self.carry_out(examined)
    }

    /// The cursor file `clamped` (repair's rewrite of `original`) with the journal that
    /// extends `original` applied, as nsqd's open would have applied it: the FINs it recorded
    /// keep counting after the rewrite gives the cursor a new fingerprint.
    pub(super) fn fold_journal(
        &mut self,
        path: &Path,
        original: &CursorFile,
        clamped: CursorFile,
        end: u64,
    ) -> Result<CursorFile> {
        let examined = journal::examine(self.fs, path, original, end).at(path)?;
        if examined.entries.is_empty() {
            return Ok(clamped);
        }
        let mut state = CursorState::from_file(&clamped);
        fin_journal::apply(&mut state, &examined.entries, end);
        self.act(
            path,
            format!(
                "applied the {} journal entr(ies) extending the old cursor file",
                examined.entries.len()
            ),
        );
        Ok(state.to_file())
    }

    /// Removes the journals beside the cursor file at `path`, saying `why`.
    pub(super) fn drop_journals(&mut self, path: &Path, why: &str) -> Result<()> {
        for journal in [
            fin_journal::journal_path(path),
            fin_journal::next_journal_path(path),
        ] {
            if self.fs.exists(&journal) {
                self.act(&journal, format!("removed: {why}"));
                if !self.dry_run {
                    self.fs.remove_file(&journal).at(&journal)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the journals of channels that have no readable cursor file.
    pub(super) fn orphan_journals(&mut self, topic: &TopicFiles) -> Result<()> {
        let dir = topic.dir.join("channels");
        let readable = journal::readable_cursors(self.fs, &dir)
            .at(&dir)?
            .into_iter()
            .map(|c| c.0)
            .collect();
        let mut examined = journal::orphans(self.fs, &dir, &readable).at(&dir)?;
        // A dry run does not reset unreadable cursors, whose journals it already dropped.
        examined.fixes.retain(|f| !self.acted_on(f.path()));
        self.carry_out(examined)
    }
}
