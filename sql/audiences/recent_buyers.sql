-- Users who completed an order between :start and :end (received time).
SELECT DISTINCT user_id
FROM {schema}.order_completed
WHERE user_id IS NOT NULL
  AND received_at >= :start
  AND received_at < :end
