"""Uploading an export to the Hugging Face Hub (or listing what would be uploaded)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HarnessError, first_line

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def upload_plan(folder: Path, repo_id: str) -> list[tuple[str, int]]:
    if not _REPO_ID.match(repo_id):
        raise HarnessError(f"--push-to-hub {repo_id}: not a repository id; write OWNER/NAME")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [(str(p.relative_to(folder)), p.stat().st_size) for p in files]


def push(folder: Path, repo_id: str, private: bool = True) -> str:
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, commit_message="Upload merged model (harness)"
        )
    except Exception as exc:  # hub errors come in many types; all mean the upload did not happen
        raise HarnessError(
            f"--push-to-hub {repo_id}: upload failed ({first_line(exc)}); the export stays in {folder}"
        ) from None
    return str(getattr(info, "commit_url", repo_id))
