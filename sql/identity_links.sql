-- Every link between two ids of one person: alias calls, and identify/track calls that
-- carry both an anonymous id and a user id. One row per distinct pair and kind, with its
-- latest event time (ts) and its latest load time (loaded: which links a run sees anew).
SELECT from_id, to_id, kind, max(ts) AS ts, max(loaded) AS loaded
FROM (
    SELECT previous_id AS from_id, user_id AS to_id, 'alias' AS kind, {timestamp} AS ts,
           uuid_ts AS loaded
    FROM {schema}.{aliases}
    WHERE previous_id IS NOT NULL AND user_id IS NOT NULL
    UNION ALL
    SELECT anonymous_id, user_id, 'identify', {timestamp}, uuid_ts
    FROM {schema}.{identifies}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
    UNION ALL
    SELECT anonymous_id, user_id, 'track', {timestamp}, uuid_ts
    FROM {schema}.{tracks}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
) AS links
GROUP BY from_id, to_id, kind
