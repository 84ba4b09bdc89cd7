select
    order_id,
    count(*) as payment_count,
    sum(amount) as amount,
    sum(case when payment_method = 'coupon' then amount else 0 end) as coupon_amount
from {{ ref('stg_payments') }}
group by order_id
