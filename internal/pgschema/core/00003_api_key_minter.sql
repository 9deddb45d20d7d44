-- +goose Up
-- Who minted each API key (docs/decisions/api-key-minter-bound.md). Keys made
-- before this was recorded have NULL here and are refused at authentication.
ALTER TABLE clearance_api_keys ADD COLUMN IF NOT EXISTS created_by_kind text;
ALTER TABLE clearance_api_keys ADD COLUMN IF NOT EXISTS created_by_user text;
