-- The links (as in identity_links.sql) of rows loaded in (since, until] of
-- each link source: what is new since a cached identity graph was resolved.
SELECT from_id, to_id, kind, max(ts) AS ts, max(loaded) AS loaded
FROM (
    SELECT previous_id AS from_id, user_id AS to_id, 'alias' AS kind, {timestamp} AS ts,
           uuid_ts AS loaded
    FROM {schema}.{aliases}
    WHERE previous_id IS NOT NULL AND user_id IS NOT NULL
      AND uuid_ts > :alias_since AND uuid_ts <= :alias_until
    UNION ALL
    SELECT anonymous_id, user_id, 'identify', {timestamp}, uuid_ts
    FROM {schema}.{identifies}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
      AND uuid_ts > :identify_since AND uuid_ts <= :identify_until
    UNION ALL
    SELECT anonymous_id, user_id, 'track', {timestamp}, uuid_ts
    FROM {schema}.{tracks}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
      AND uuid_ts > :track_since AND uuid_ts <= :track_until
) AS links
GROUP BY from_id, to_id, kind
