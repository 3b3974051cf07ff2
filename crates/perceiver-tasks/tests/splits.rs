//! Opening a run's splits together: no test split on request, class lists mapped by name (or
//! refused), sample shapes and example counts checked.

use perceiver_data::Dataset;
use perceiver_tasks::{
    check_classes, open_eval_split, open_split, open_splits, DataSpec, DatasetKind, TaskError,
    MAX_GENERATED,
};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An image folder `root/<split>/<class>/a.png` for each `(split, classes)`.
fn image_folder(name: &str, layout: &[(&str, &[&str])]) -> PathBuf {
    let root = temp_dir(name);
    for (split, classes) in layout {
        for class in *classes {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            image::GrayImage::from_pixel(8, 8, image::Luma([100]))
                .save(dir.join("a.png"))
                .unwrap();
        }
    }
    root
}

fn folder_spec(root: &Path) -> DataSpec {
    // `DataSpec::new` wants a folder for image folders: start from a generated dataset's.
    let mut spec = DataSpec::new(DatasetKind::Shapes).unwrap();
    spec.dataset = DatasetKind::ImageFolder;
    spec.data_dir = Some(root.to_path_buf());
    (spec.train_size, spec.test_size) = (None, None);
    (spec.image_size, spec.patch, spec.augment) = (8, 1, false);
    spec
}

fn idx(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    out.extend(std::iter::repeat_n(fill, n as usize));
    out
}

/// An MNIST folder with `n` train images of `train_side`² pixels and `n` test images of
/// `test_side`² pixels (labels 0, 1, 2, ...).
fn mnist(name: &str, n: u32, train_side: u32, test_side: u32) -> PathBuf {
    let dir = temp_dir(name);
    for (prefix, side) in [("train", train_side), ("t10k", test_side)] {
        let images = idx(&[n, side, side], 7);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        let mut labels = idx(&[n], 0);
        for (i, l) in labels[8..].iter_mut().enumerate() {
            *l = (i % 10) as u8;
        }
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
    dir
}

fn mnist_spec(dir: &Path) -> DataSpec {
    let mut spec = DataSpec::new(DatasetKind::Mnist).unwrap();
    spec.data_dir = Some(dir.to_path_buf());
    spec
}

#[test]
fn test_size_zero_opens_no_test_split() {
    let mut spec = DataSpec::new(DatasetKind::Shapes).unwrap();
    (spec.train_size, spec.test_size) = (Some(8), Some(0));
    let s = open_splits(&spec).unwrap();
    assert_eq!(s.train.len(), 8);
    assert!(s.test.is_none());
    assert_eq!(s.notes.len(), 1);
    assert!(
        s.notes[0].starts_with("no test split (test size 0)"),
        "{:?}",
        s.notes
    );
    // Both splits when the test size is not 0.
    spec.test_size = Some(4);
    let s = open_splits(&spec).unwrap();
    assert_eq!(s.test.map(|t| t.len()), Some(4));
    assert!(s.notes.is_empty(), "{:?}", s.notes);
}

#[test]
fn test_classes_are_mapped_onto_the_training_classes_by_name() {
    let root = image_folder(
        "splits-subset",
        &[("train", &["cat", "dog", "fox"]), ("test", &["dog", "fox"])],
    );
    let s = open_splits(&folder_spec(&root)).unwrap();
    let test = s.test.unwrap();
    assert_eq!(test.class_names(), vec!["cat", "dog", "fox"]);
    assert_eq!(test.num_classes(), 3);
    // Test sample 0 is the dog: label 1 in the training numbering (0 in the test folder's).
    assert_eq!(test.get(0).unwrap().label, 1);
    assert_eq!(test.get(1).unwrap().label, 2);
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("has 2 of the 3 classes of the train split")
            && s.notes[0].contains("(no 'cat')"),
        "{}",
        s.notes[0]
    );
}

#[test]
fn a_test_class_the_training_split_lacks_is_an_error_naming_it() {
    let root = image_folder(
        "splits-unknown",
        &[("train", &["cat", "dog"]), ("test", &["cow", "dog"])],
    );
    let Err(e) = open_splits(&folder_spec(&root)) else {
        panic!("a test class unknown to training was accepted");
    };
    let msg = e.to_string();
    assert!(matches!(e, TaskError::UnknownClasses { ref classes, .. } if classes == &["cow"]));
    let (train, test) = (root.join("train"), root.join("test"));
    assert_eq!(
        msg,
        format!(
            "the test split of image-folder ({}) has classes that the train split of \
             image-folder ({}) does not have: 'cow'",
            test.display(),
            train.display()
        )
    );
}

#[test]
fn data_classes_are_mapped_onto_the_checkpoint_classes() {
    let root = image_folder(
        "splits-ckpt",
        &[("train", &["cat", "dog"]), ("test", &["cat", "dog"])],
    );
    let mut spec = folder_spec(&root);
    spec.class_names = ["owl", "dog", "cat"].map(String::from).to_vec();
    let s = open_splits(&spec).unwrap();
    assert_eq!(s.train.num_classes(), 3);
    assert_eq!(
        s.train.get(0).unwrap().label,
        2,
        "cat is class 2 of the checkpoint"
    );
    let test = s.test.unwrap();
    assert_eq!((test.num_classes(), test.get(1).unwrap().label), (3, 1));
    assert!(s.notes[0].contains("2 of the 3 classes of the checkpoint (no 'owl')"));
    // The evaluation side: the test split alone.
    let (test, notes) = open_eval_split(&spec).unwrap();
    assert_eq!((test.get(0).unwrap().label, notes.len()), (2, 1));
    // A data class the checkpoint does not know.
    spec.class_names = vec!["dog".to_string()];
    let msg = open_splits(&spec).err().unwrap().to_string();
    assert!(
        msg.ends_with("has classes that the checkpoint does not have: 'cat'"),
        "{msg}"
    );
    let msg = open_eval_split(&spec).err().unwrap().to_string();
    assert!(msg.starts_with("the test split of image-folder"), "{msg}");
    // Same list, same order: unchanged, no note.
    let train = open_split(&spec, perceiver_data::Split::Train).unwrap();
    let names = train.class_names();
    let (_, note) = check_classes(train, "the data", &names, "the checkpoint").unwrap();
    assert!(note.is_none());
}

#[test]
fn train_and_test_shapes_must_agree() {
    let dir = mnist("splits-shape", 3, 4, 3);
    let Err(e) = open_splits(&mnist_spec(&dir)) else {
        panic!("4x4 and 3x3 images accepted together");
    };
    assert_eq!(
        e.to_string(),
        format!(
            "the train split of mnist ({0}) has samples of 4x4x1 but the test split of mnist \
             ({0}) has samples of 3x3x1",
            dir.display()
        )
    );
    let ok = mnist("splits-shape-ok", 3, 4, 4);
    let s = open_splits(&mnist_spec(&ok)).unwrap();
    assert_eq!((s.train.len(), s.test.map(|t| t.len())), (3, Some(3)));
}

#[test]
fn sizes_past_a_split_or_the_generation_cap_are_errors() {
    let dir = mnist("splits-size", 5, 4, 4);
    let mut spec = mnist_spec(&dir);
    spec.train_size = Some(6);
    let Err(e) = open_splits(&spec) else {
        panic!("6 examples taken from 5");
    };
    assert_eq!(
        e.to_string(),
        format!(
            "6 train examples asked for, but mnist (train) in {} holds 5",
            dir.display()
        )
    );
    spec.train_size = Some(5);
    spec.test_size = Some(2);
    let s = open_splits(&spec).unwrap();
    assert_eq!((s.train.len(), s.test.map(|t| t.len())), (5, Some(2)));

    let mut spec = DataSpec::new(DatasetKind::Points).unwrap();
    for asked in [usize::MAX, MAX_GENERATED + 1] {
        spec.train_size = Some(asked);
        let Err(e) = open_splits(&spec) else {
            panic!("{asked} points clouds accepted");
        };
        assert_eq!(
            e.to_string(),
            format!("{asked} train examples asked for, but points generates at most 10000000")
        );
    }
    let mut spec = DataSpec::new(DatasetKind::Video).unwrap();
    spec.test_size = Some(usize::MAX);
    assert!(matches!(
        open_split(&spec, perceiver_data::Split::Test),
        Err(TaskError::TooManyExamples { .. })
    ));
}
