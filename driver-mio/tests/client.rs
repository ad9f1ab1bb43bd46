//! weft-mio specifics the conformance suite does not cover.

use bytes::Bytes;
use std::time::Duration;
use weft_mio::{
    CallOptions, Client, ClientOptions, ConstantResolver, HandlerMap, MethodKey, Request, Server,
    ServerOptions,
};

fn echo_server(opts: ServerOptions) -> Server {
    let mut h = HandlerMap::new();
    h.set("weft.Test", "Echo", |req: Request| Ok(req.args));
    Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), h, opts).unwrap()
}

#[test]
fn client_and_server_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<weft_mio::CancelHandle>();
    fn assert_send<T: Send>() {}
    assert_send::<weft_mio::PendingCall>();
    assert_send::<Server>();
}

#[test]
fn optimistic_spin_and_always_off_loop_handlers_work() {
    let server = echo_server(ServerOptions {
        inline_handler_duration: None,
        ..Default::default()
    });
    let client = Client::connect(
        ConstantResolver::new([server.local_endpoint().clone()]),
        ClientOptions::default(),
    )
    .unwrap();
    client.set_optimistic_spin(Duration::from_micros(50));
    let key = MethodKey::new("weft.Test", "Echo");
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let client = &client;
            s.spawn(move || {
                for n in 0..200 {
                    let args = Bytes::from(vec![i; n % 50]);
                    assert_eq!(
                        client
                            .call(key, args.clone(), CallOptions::default())
                            .unwrap(),
                        args
                    );
                }
            });
        }
    });
    client.close();
    let err = client
        .call(key, Bytes::new(), CallOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    server.shutdown();
}
