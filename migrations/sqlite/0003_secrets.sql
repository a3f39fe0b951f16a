-- Repository secrets, encrypted with AES-256-GCM under GANTRY_SECRET_KEY.
-- `sealed` is base64(nonce || ciphertext); the repository and name are the
-- associated data, so a value moved to another row no longer decrypts.
CREATE TABLE secrets (
    id         INTEGER PRIMARY KEY,
    repo_id    BIGINT NOT NULL REFERENCES repos (id),
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    branches   TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (repo_id, name)
);
