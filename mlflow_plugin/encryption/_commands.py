"""``mlflow-plugin rekey URI``: re-encrypt stored artifacts with each workspace's newest key
(docs/ARCHITECTURE.md, "Encryption at rest", rotation)."""

from __future__ import annotations

import click

__all__ = ["rekey"]


@click.command()
@click.argument("uri")
@click.option("--path", default="", help="Only the files under this path of the store.")
@click.option("--dry-run", is_flag=True, help="List what would be re-encrypted; write nothing.")
@click.option(
    "--plaintext",
    is_flag=True,
    help="Also encrypt files stored before encryption was switched on (migration).",
)
def rekey(uri: str, path: str, dry_run: bool, plaintext: bool) -> None:
    """Re-encrypt every file of the encrypted store URI (the server's --artifacts-destination,
    e.g. encrypted+file:///srv/mlflow/artifacts) that is not under its workspace's newest key.

    Run it with the same keys as the server (MLFLOW_PLUGIN_KEY_FILE / MLFLOW_PLUGIN_KEY_*),
    after adding the new key and before removing the old one. Files are rewritten in place
    (same path); readers see either the old or the new ciphertext, both of which decrypt.
    """
    from mlflow_plugin.encryption import SCHEME_PREFIX, EncryptedArtifactRepository
    from mlflow_plugin.errors import BadInput

    if not uri.startswith(SCHEME_PREFIX):
        raise BadInput(f"URI must start with {SCHEME_PREFIX} (e.g. encrypted+file:///srv/mlflow)")
    repo = EncryptedArtifactRepository(uri)
    done, skipped = repo.rekey(path or None, dry_run=dry_run, plaintext=plaintext)
    for file_path, change in done:
        click.echo(f"{'would re-encrypt' if dry_run else 're-encrypted'} {file_path}: {change}")
    click.echo(f"{len(done)} file(s) {'to re-encrypt' if dry_run else 're-encrypted'}")
    if skipped:
        click.echo(
            f"{len(skipped)} file(s) not encrypted, left as they are (--plaintext encrypts "
            f"them), e.g. {skipped[0]}"
        )
