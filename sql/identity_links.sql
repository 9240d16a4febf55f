-- Every link between two ids of one person: alias calls, and identify/track calls that
-- carry both an anonymous id and a user id. One row per distinct pair, latest time first.
SELECT from_id, to_id, kind, max(ts) AS ts
FROM (
    SELECT previous_id AS from_id, user_id AS to_id, 'alias' AS kind, "timestamp" AS ts
    FROM {schema}.{aliases}
    WHERE previous_id IS NOT NULL AND user_id IS NOT NULL
    UNION ALL
    SELECT anonymous_id, user_id, 'identify', "timestamp"
    FROM {schema}.{identifies}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
    UNION ALL
    SELECT anonymous_id, user_id, 'track', "timestamp"
    FROM {schema}.{tracks}
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
) AS links
GROUP BY from_id, to_id, kind
