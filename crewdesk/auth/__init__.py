"""Who calls the HTTP API: API keys with scopes, stored as Argon2id hashes (`crewdesk apikey create` prints a key once)."""
