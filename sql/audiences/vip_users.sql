-- Users whose latest identify marked them VIP. PostgreSQL syntax: the job checks it and
-- writes it for the warehouse's dialect ("timestamp" is the same column everywhere).
SELECT user_id
FROM (
    SELECT
        user_id,
        is_vip,
        row_number() OVER (PARTITION BY user_id ORDER BY "timestamp" DESC, received_at DESC, id DESC) AS recency
    FROM {schema}.identifies
    WHERE user_id IS NOT NULL AND is_vip IS NOT NULL
) AS latest
WHERE recency = 1 AND is_vip
